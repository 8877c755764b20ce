// The server role: deduplication of incoming CON/NON (RFC 7252 §4.5) and the RFC answers to
// messages that fit no exchange.
#include <gtest/gtest.h>

#include "fake_peer.hpp"

namespace coapgw::exchange {
namespace {

using namespace test;

const std::vector<std::byte> tok{std::byte{1}, std::byte{2}};

TEST(ServerRole, DuplicateConGetsTheSameAnswerAndIsProcessedOnce) {
  Fixture f;
  auto req = message(coap::Type::con, coap::code::get, 100, tok);
  deliver(f.layer, *f.s, req, f.now);
  ASSERT_EQ(f.peer.requests.size(), 1u);
  // Still being worked on: a duplicate is neither processed nor answered.
  deliver(f.layer, *f.s, req, f.now + 1s);
  EXPECT_EQ(f.peer.requests.size(), 1u);
  EXPECT_EQ(f.peer.duplicates, 1);
  EXPECT_TRUE(f.peer.sent.empty());
  auto answer = coap::serialize(message(coap::Type::ack, coap::code::content, 100, tok, "v"));
  f.layer.answer(*f.s, 100, tok, answer);
  ASSERT_EQ(f.peer.sent.size(), 1u);
  deliver(f.layer, *f.s, req, f.now + 2s);
  EXPECT_EQ(f.peer.requests.size(), 1u);
  EXPECT_EQ(f.peer.duplicates, 2);
  ASSERT_EQ(f.peer.sent.size(), 2u);
  EXPECT_EQ(coap::serialize(f.peer.sent[1]), answer);
}

TEST(ServerRole, DuplicateNonIsDroppedSilently) {
  Fixture f;
  auto req = message(coap::Type::non, coap::code::post, 7, tok, "x");
  deliver(f.layer, *f.s, req, f.now);
  deliver(f.layer, *f.s, req, f.now);
  EXPECT_EQ(f.peer.requests.size(), 1u);
  EXPECT_EQ(f.peer.duplicates, 1);
  EXPECT_TRUE(f.peer.sent.empty());
}

TEST(ServerRole, SameMessageIdWithAnotherTokenIsANewExchange) {
  Fixture f;
  deliver(f.layer, *f.s, message(coap::Type::con, coap::code::get, 5, tok), f.now);
  deliver(f.layer, *f.s, message(coap::Type::con, coap::code::get, 5, {std::byte{9}}), f.now);
  EXPECT_EQ(f.peer.requests.size(), 2u);
  ASSERT_EQ(f.peer.anomalies.size(), 1u);
  EXPECT_EQ(f.peer.anomalies[0], Anomaly::message_id_reused);
  EXPECT_EQ(f.peer.duplicates, 0);
}

TEST(ServerRole, DuplicatesExpireWithTheExchangeLifetime) {
  Fixture f;
  auto req = message(coap::Type::con, coap::code::get, 5, tok);
  deliver(f.layer, *f.s, req, f.now);
  deliver(f.layer, *f.s, req, f.now + 247s);  // EXCHANGE_LIFETIME later: a new request
  EXPECT_EQ(f.peer.requests.size(), 2u);
}

TEST(ServerRole, PingUnexpectedAndReservedMessages) {
  Fixture f;
  deliver(f.layer, *f.s, message(coap::Type::con, coap::code::empty, 1), f.now);  // CoAP ping
  ASSERT_EQ(f.peer.sent.size(), 1u);
  EXPECT_EQ(f.peer.sent[0].type, coap::Type::rst);
  EXPECT_EQ(f.peer.sent[0].message_id, 1);
  deliver(f.layer, *f.s, message(coap::Type::non, coap::code::empty, 2), f.now);
  deliver(f.layer, *f.s, message(coap::Type::con, coap::code::content, 3, tok), f.now);  // no request of ours
  deliver(f.layer, *f.s, message(coap::Type::non, coap::code::content, 4, tok), f.now);
  deliver(f.layer, *f.s, message(coap::Type::con, coap::make_code(7, 1), 5), f.now);
  EXPECT_EQ(f.peer.anomalies, (std::vector<Anomaly>{Anomaly::empty_non, Anomaly::unexpected_response,
                                                     Anomaly::unexpected_response, Anomaly::reserved_code}));
  ASSERT_EQ(f.peer.sent.size(), 3u);  // RST for each CON, nothing for a NON
  EXPECT_EQ(f.peer.sent[1].message_id, 3);
  EXPECT_EQ(f.peer.sent[2].message_id, 5);
  EXPECT_TRUE(f.peer.requests.empty());
}

TEST(ServerRole, ASessionThatServesNothingResetsRequests) {
  Fixture f;
  f.peer.serves = false;
  deliver(f.layer, *f.s, message(coap::Type::con, coap::code::get, 8, tok), f.now);
  deliver(f.layer, *f.s, message(coap::Type::non, coap::code::get, 9, tok), f.now);
  ASSERT_EQ(f.peer.sent.size(), 1u);
  EXPECT_EQ(f.peer.sent[0].type, coap::Type::rst);
  EXPECT_TRUE(f.peer.requests.empty());
}

}  // namespace
}  // namespace coapgw::exchange
