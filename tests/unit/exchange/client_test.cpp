// The client role: tokens, piggybacked and separate answers, RST, give-up, deadlines, parked
// requests and the multi-answer hook, against a fake peer and clock.
#include <gtest/gtest.h>

#include "fake_peer.hpp"

namespace coapgw::exchange {
namespace {

using namespace test;

struct Client : Fixture {
  Client() : Fixture({}, session::Type::client) {}
  std::vector<Result> results;
  std::optional<Token> get(TimePoint at, bool park = false, Request r = {}) {
    return layer.client().start(*s, std::move(r), [this](Result x) { results.push_back(std::move(x)); }, at, park);
  }
  // The peer's answer to the last message we sent.
  coap::Message reply(coap::Type type, std::uint8_t code, std::string_view payload = {}) {
    const auto& req = peer.sent.back();
    return message(type, code, req.message_id, req.token, payload);
  }
};

TEST(ClientRole, PiggybackedAnswerIsMatchedByToken) {
  Client c;
  ASSERT_TRUE(c.get(c.now));
  ASSERT_TRUE(c.get(c.now));
  ASSERT_EQ(c.peer.sent.size(), 2u);
  const auto first = c.peer.sent[0], second = c.peer.sent[1];
  EXPECT_EQ(first.type, coap::Type::con);
  EXPECT_EQ(first.token.size(), 8u);
  EXPECT_NE(first.token, second.token);
  EXPECT_NE(first.message_id, second.message_id);
  EXPECT_EQ(c.s->refcount(), 3);  // the session's own reference and one per request
  // An ACK for the first CON carrying another token is not its answer.
  auto wrong = message(coap::Type::ack, coap::code::content, first.message_id, second.token, "no");
  deliver(c.layer, *c.s, wrong, c.now);
  EXPECT_TRUE(c.results.empty());
  deliver(c.layer, *c.s, message(coap::Type::ack, coap::code::content, first.message_id, first.token, "a"), c.now);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_FALSE(c.results[0].failure);
  EXPECT_EQ(c.results[0].response.code, coap::code::content);
  EXPECT_EQ(coap::as_string(c.results[0].response.payload), "a");
  EXPECT_EQ(c.layer.client().size(), 1u);
  EXPECT_EQ(c.s->refcount(), 2);
  // Late ACK for the answered CON: ignored.
  deliver(c.layer, *c.s, message(coap::Type::ack, coap::code::content, first.message_id, first.token, "a"), c.now);
  EXPECT_EQ(c.results.size(), 1u);
}

TEST(ClientRole, EmptyAckThenSeparateConAnswerIsAckedAndRetransmissionsAckedAgain) {
  Client c;
  ASSERT_TRUE(c.get(c.now));
  auto req = c.peer.sent.back();
  deliver(c.layer, *c.s, message(coap::Type::ack, coap::code::empty, req.message_id), c.now);
  EXPECT_TRUE(c.results.empty());
  c.advance(10s);  // ACKed: no more retransmissions
  EXPECT_EQ(c.peer.sent.size(), 1u);
  auto separate = message(coap::Type::con, coap::code::content, 0x4242, req.token, "late");
  deliver(c.layer, *c.s, separate, c.now);
  ASSERT_EQ(c.peer.sent.size(), 2u);
  EXPECT_EQ(c.peer.sent[1].type, coap::Type::ack);
  EXPECT_EQ(c.peer.sent[1].message_id, 0x4242);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(coap::as_string(c.results[0].response.payload), "late");
  deliver(c.layer, *c.s, separate, c.now + 3s);  // our ACK was lost
  ASSERT_EQ(c.peer.sent.size(), 3u);
  EXPECT_EQ(c.peer.sent[2].type, coap::Type::ack);
  EXPECT_EQ(c.results.size(), 1u);  // acted on once
}

TEST(ClientRole, SeparateNonAnswerWithoutAckEndsTheRetransmission) {
  Client c;
  ASSERT_TRUE(c.get(c.now));
  auto token = c.peer.sent.back().token;
  deliver(c.layer, *c.s, message(coap::Type::non, coap::code::content, 77, token, "n"), c.now);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.peer.sent.size(), 1u);  // a NON is not ACKed
  c.advance(10s);
  EXPECT_EQ(c.peer.sent.size(), 1u);
}

TEST(ClientRole, UnknownTokenIsResetAndRstFailsTheRequest) {
  Client c;
  ASSERT_TRUE(c.get(c.now));
  deliver(c.layer, *c.s, message(coap::Type::con, coap::code::content, 5, std::vector<std::byte>(8, std::byte{0xee})), c.now);
  ASSERT_EQ(c.peer.sent.size(), 2u);
  EXPECT_EQ(c.peer.sent[1].type, coap::Type::rst);
  deliver(c.layer, *c.s, message(coap::Type::rst, coap::code::empty, c.peer.sent[0].message_id), c.now);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].failure, Failure::reset);
  EXPECT_EQ(c.s->refcount(), 1);
}

TEST(ClientRole, RetransmitsWithTheSameMessageIdThenTimesOut) {
  Client c;
  ASSERT_TRUE(c.get(c.now));
  for (auto gap : {2s, 4s, 8s, 16s}) c.advance(gap);
  ASSERT_EQ(c.peer.sent.size(), 5u);
  for (auto& m : c.peer.sent) EXPECT_EQ(m.message_id, c.peer.sent[0].message_id);
  EXPECT_TRUE(c.results.empty());
  c.advance(32s);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].failure, Failure::timeout);
  EXPECT_EQ(c.layer.client().size(), 0u);
}

TEST(ClientRole, DeadlineEndsTheRequest) {
  Client c;
  Request r;
  r.deadline = c.now + 3s;
  ASSERT_TRUE(c.get(c.now, false, r));
  EXPECT_EQ(c.layer.next_deadline(), c.now + 2s);  // the retransmission comes first
  c.advance(2s);
  EXPECT_EQ(c.layer.next_deadline(), c.now + 1s);
  c.advance(1s);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].failure, Failure::timeout);
  EXPECT_FALSE(c.layer.next_deadline());
}

TEST(ClientRole, RefusedSendIsUnreachable) {
  Client c;
  c.peer.refuse = true;
  ASSERT_TRUE(c.get(c.now));
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].failure, Failure::unreachable);
  EXPECT_EQ(c.layer.outstanding(), 0u);
}

TEST(ClientRole, BoundedAndParkedRequests) {
  LayerSettings settings;
  settings.client.max_exchanges = 2;
  Fixture f(settings, session::Type::client);
  std::vector<Result> results;
  auto h = [&](Result r) { results.push_back(std::move(r)); };
  ASSERT_TRUE(f.layer.client().start(*f.s, {}, h, f.now, true));
  ASSERT_TRUE(f.layer.client().start(*f.s, {}, h, f.now, true));
  EXPECT_FALSE(f.layer.client().start(*f.s, {}, h, f.now, true));  // the bound
  EXPECT_TRUE(f.peer.sent.empty());
  EXPECT_EQ(f.layer.client().parked(), 2u);
  f.layer.client().send_parked(*f.s, f.now);
  EXPECT_EQ(f.peer.sent.size(), 2u);
  EXPECT_EQ(f.layer.client().parked(), 0u);
  ASSERT_TRUE(results.empty());
  f.layer.client().fail(*f.s, ClientExchanges::Which::awaiting_ack, Failure::closed);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[1].failure, Failure::closed);
}

TEST(ClientRole, ParkedRequestsFailWithoutBeingSent) {
  Client c;
  ASSERT_TRUE(c.get(c.now, true));
  ASSERT_TRUE(c.get(c.now, false));
  c.layer.client().fail(*c.s, ClientExchanges::Which::parked, Failure::unreachable);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].failure, Failure::unreachable);
  EXPECT_EQ(c.layer.client().size(), 1u);
  EXPECT_EQ(c.peer.sent.size(), 1u);
}

TEST(ClientRole, MultiRegistrationReceivesSeveralAnswersUntilCancelled) {
  Client c;
  Request r;
  r.multi = true;  // the Observe hook
  auto token = c.get(c.now, false, r);
  ASSERT_TRUE(token);
  auto req = c.peer.sent.back();
  deliver(c.layer, *c.s, c.reply(coap::Type::ack, coap::code::content, "1"), c.now);
  deliver(c.layer, *c.s, message(coap::Type::con, coap::code::content, 500, req.token, "2"), c.now + 5s);
  deliver(c.layer, *c.s, message(coap::Type::non, coap::code::content, 501, req.token, "3"), c.now + 9s);
  ASSERT_EQ(c.results.size(), 3u);
  EXPECT_EQ(coap::as_string(c.results[0].response.payload), "1");
  EXPECT_EQ(coap::as_string(c.results[1].response.payload), "2");
  EXPECT_EQ(coap::as_string(c.results[2].response.payload), "3");
  EXPECT_EQ(c.peer.sent.back().type, coap::Type::ack);  // the CON notification was ACKed
  EXPECT_EQ(c.layer.client().size(), 1u);
  EXPECT_EQ(c.s->refcount(), 2);
  c.layer.client().cancel(*token);
  EXPECT_EQ(c.s->refcount(), 1);
  deliver(c.layer, *c.s, message(coap::Type::con, coap::code::content, 502, req.token, "4"), c.now + 20s);
  EXPECT_EQ(c.results.size(), 3u);
  EXPECT_EQ(c.peer.sent.back().type, coap::Type::rst);  // no longer registered
}

TEST(ClientRole, NonRequestIsSentOnceAndAnsweredByToken) {
  Client c;
  Request r;
  r.type = coap::Type::non;
  r.deadline = c.now + 5s;
  ASSERT_TRUE(c.get(c.now, false, r));
  ASSERT_EQ(c.peer.sent.size(), 1u);
  EXPECT_EQ(c.peer.sent[0].type, coap::Type::non);
  EXPECT_EQ(c.layer.outstanding(), 0u);  // nothing to retransmit
  c.advance(4s);
  EXPECT_EQ(c.peer.sent.size(), 1u);
  deliver(c.layer, *c.s, c.reply(coap::Type::non, coap::code::content, "n"), c.now);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(coap::as_string(c.results[0].response.payload), "n");
  EXPECT_EQ(c.peer.sent.size(), 1u);  // a NON answer is not ACKed
}

TEST(ClientRole, DropSessionFailsItsRequests) {
  Client c;
  ASSERT_TRUE(c.get(c.now));
  c.layer.drop_session(*c.s);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].failure, Failure::closed);
  EXPECT_EQ(c.layer.outstanding(), 0u);
}

}  // namespace
}  // namespace coapgw::exchange
