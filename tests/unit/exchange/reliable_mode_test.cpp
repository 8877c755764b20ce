// Reliable mode (RFC 8323): on a tcp/tls/ws/wss session the layer neither deduplicates, acknowledges
// nor retransmits, and the client role matches answers by token alone. Stream transports hand
// messages up as NON with message id 0 (a stream has neither), so every request carries the same id.
#include <gtest/gtest.h>

#include "fake_peer.hpp"

namespace coapgw::exchange {
namespace {

using namespace test;

const std::vector<std::byte> tok{std::byte{1}, std::byte{2}};

struct Stream : Fixture {
  explicit Stream(session::Type type = session::Type::server, session::Proto proto = session::Proto::tcp)
      : Fixture({}, type, proto) {}
};

TEST(ReliableMode, EveryProtoOfRfc8323IsReliableAndNoDatagramOneIs) {
  using P = session::Proto;
  for (P p : {P::tcp, P::tls, P::ws, P::wss}) EXPECT_TRUE(session::is_reliable(p)) << session::to_string(p);
  for (P p : {P::none, P::udp, P::dtls}) EXPECT_FALSE(session::is_reliable(p)) << session::to_string(p);
}

TEST(ReliableMode, SameMessageIdAndTokenTwiceIsTwoRequests) {
  Stream f;
  auto req = message(coap::Type::non, coap::code::post, 0, tok, "a");
  deliver(f.layer, *f.s, req, f.now);
  deliver(f.layer, *f.s, req, f.now);
  EXPECT_EQ(f.peer.requests.size(), 2u);
  EXPECT_EQ(f.peer.duplicates, 0);
  EXPECT_TRUE(f.peer.anomalies.empty());
  EXPECT_EQ(f.peer.cache.size(), 0u);  // nothing recorded for duplicates
}

TEST(ReliableMode, AnswersAreSentOnceAndNotKept) {
  Stream f;
  deliver(f.layer, *f.s, message(coap::Type::non, coap::code::get, 0, tok), f.now);
  auto answer = coap::serialize(message(coap::Type::non, coap::code::content, 0, tok, "v"));
  f.layer.answer(*f.s, 0, tok, answer);
  ASSERT_EQ(f.peer.sent.size(), 1u);
  EXPECT_EQ(f.peer.sent[0].code, coap::code::content);
  // The Empty ACK of a separate answer means nothing on a stream: not sent.
  auto empty_ack = coap::serialize(message(coap::Type::ack, coap::code::empty, 0));
  f.layer.answer(*f.s, 0, tok, empty_ack);
  EXPECT_EQ(f.peer.sent.size(), 1u);
}

TEST(ReliableMode, OurConIsSentOnceAndNeverRetransmitted) {
  Stream f;
  auto con = coap::serialize(message(coap::Type::con, coap::code::content, 9, tok, "late"));
  EXPECT_TRUE(f.layer.send_con(*f.s, con, 9, f.now));
  EXPECT_EQ(f.layer.outstanding(), 0u);
  EXPECT_EQ(f.s->refcount(), 0);  // nothing awaits an ACK, so nothing holds the session
  f.advance(60s);
  EXPECT_EQ(f.peer.sent.size(), 1u);
  EXPECT_EQ(f.layer.retransmissions(), 0u);
}

TEST(ReliableMode, NoRstNoAckAndEmptyMessagesAreIgnored) {
  Stream f;
  f.layer.send_empty(*f.s, coap::Type::rst, 0);
  f.layer.send_empty(*f.s, coap::Type::ack, 0);
  EXPECT_TRUE(f.peer.sent.empty());
  deliver(f.layer, *f.s, message(coap::Type::con, coap::code::empty, 0), f.now);  // a "CoAP ping"
  deliver(f.layer, *f.s, message(coap::Type::non, coap::code::empty, 0), f.now);
  deliver(f.layer, *f.s, message(coap::Type::non, coap::code::content, 0, tok, "stray"), f.now);  // no request
  EXPECT_TRUE(f.peer.sent.empty());
  ASSERT_EQ(f.peer.anomalies.size(), 1u);
  EXPECT_EQ(f.peer.anomalies[0], Anomaly::unexpected_response);
}

TEST(ReliableMode, ClientRequestsAreMatchedByTokenWithoutRetransmission) {
  Stream c(session::Type::client);
  std::vector<Result> results;
  auto get = [&] {
    return c.layer.client().start(*c.s, Request{}, [&](Result r) { results.push_back(std::move(r)); }, c.now, false);
  };
  ASSERT_TRUE(get());
  ASSERT_TRUE(get());
  ASSERT_EQ(c.peer.sent.size(), 2u);
  EXPECT_EQ(c.layer.outstanding(), 0u);
  c.advance(10s);  // ACK_TIMEOUT and more: no retransmission on a stream
  EXPECT_EQ(c.peer.sent.size(), 2u);
  // Answers arrive as NON with message id 0, in any order; each is its request's.
  const auto first = c.peer.sent[0], second = c.peer.sent[1];
  deliver(c.layer, *c.s, message(coap::Type::non, coap::code::content, 0, second.token, "2"), c.now);
  deliver(c.layer, *c.s, message(coap::Type::non, coap::code::content, 0, first.token, "1"), c.now);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(coap::as_string(results[0].response.payload), "2");
  EXPECT_EQ(coap::as_string(results[1].response.payload), "1");
  EXPECT_TRUE(c.peer.anomalies.empty());
}

}  // namespace
}  // namespace coapgw::exchange
