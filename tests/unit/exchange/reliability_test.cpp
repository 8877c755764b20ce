// RFC 7252 §4.2 reliability of our CONs (server role: separate answers), with a fake clock and peer.
#include <gtest/gtest.h>

#include "fake_peer.hpp"

namespace coapgw::exchange {
namespace {

using namespace test;

std::vector<std::byte> separate_answer(std::uint16_t mid) {
  return coap::serialize(message(coap::Type::con, coap::code::content, mid, {std::byte{7}}, "late"));
}

TEST(Reliability, RetransmissionScheduleDoublesThenGivesUp) {
  Fixture f;  // ACK_TIMEOUT 2 s, MAX_RETRANSMIT 4; random 0: the first timeout is exactly 2 s
  ASSERT_TRUE(f.layer.send_con(*f.s, separate_answer(40), 40, f.now));
  EXPECT_EQ(f.s->refcount(), 1);  // held while the CON is outstanding
  ASSERT_EQ(f.peer.sent.size(), 1u);
  EXPECT_EQ(f.layer.next_deadline(), f.now + 2s);
  // Retransmissions 2, 4, 8 and 16 s after the one before; none a millisecond early.
  std::size_t expected = 1;
  for (auto gap : {2000ms, 4000ms, 8000ms, 16000ms}) {
    f.advance(gap - 1ms);
    EXPECT_EQ(f.peer.sent.size(), expected);
    f.advance(1ms);
    ++expected;
    ASSERT_EQ(f.peer.sent.size(), expected);
    EXPECT_EQ(f.peer.sent.back().message_id, 40);
    EXPECT_EQ(f.peer.sent.back().type, coap::Type::con);
  }
  EXPECT_EQ(f.layer.retransmissions(), 4u);
  EXPECT_TRUE(f.peer.ended.empty());
  f.advance(32000ms - 1ms);
  EXPECT_TRUE(f.peer.ended.empty());
  f.advance(1ms);  // the last timeout ran out: given up, nothing more sent
  ASSERT_EQ(f.peer.ended.size(), 1u);
  EXPECT_EQ(f.peer.ended[0], std::make_pair(std::uint16_t{40}, Ending::gave_up));
  EXPECT_EQ(f.peer.sent.size(), 5u);
  EXPECT_EQ(f.s->refcount(), 0);
  EXPECT_EQ(f.layer.outstanding(), 0u);
  EXPECT_FALSE(f.layer.next_deadline());
}

TEST(Reliability, FirstTimeoutIsRandomisedUpToTheFactor) {
  Fixture f;
  f.high_random = true;
  ASSERT_TRUE(f.layer.send_con(*f.s, separate_answer(1), 1, f.now));
  auto due = f.layer.next_deadline();
  ASSERT_TRUE(due);
  EXPECT_GT(*due - f.now, 2900ms);
  EXPECT_LE(*due - f.now, 3000ms);
  TransmissionParameters p;
  EXPECT_EQ(p.initial_timeout(0), 2000ms);
  p.ack_random_factor = 1.0;
  EXPECT_EQ(p.initial_timeout(~std::uint64_t{0}), 2000ms);
}

TEST(Reliability, AckOrRstEndsTheExchange) {
  Fixture f;
  ASSERT_TRUE(f.layer.send_con(*f.s, separate_answer(5), 5, f.now));
  ASSERT_TRUE(f.layer.send_con(*f.s, separate_answer(6), 6, f.now));
  EXPECT_EQ(f.s->refcount(), 2);
  deliver(f.layer, *f.s, message(coap::Type::ack, coap::code::empty, 5), f.now);
  deliver(f.layer, *f.s, message(coap::Type::rst, coap::code::empty, 6), f.now);
  ASSERT_EQ(f.peer.ended.size(), 2u);
  EXPECT_EQ(f.peer.ended[0], std::make_pair(std::uint16_t{5}, Ending::acked));
  EXPECT_EQ(f.peer.ended[1], std::make_pair(std::uint16_t{6}, Ending::reset));
  EXPECT_EQ(f.s->refcount(), 0);
  f.advance(100s);
  EXPECT_EQ(f.peer.sent.size(), 2u);  // nothing retransmitted
  EXPECT_EQ(f.layer.retransmissions(), 0u);
}

TEST(Reliability, StrayAndLateAcksAreIgnored) {
  Fixture f;
  deliver(f.layer, *f.s, message(coap::Type::ack, coap::code::empty, 99), f.now);  // nothing outstanding
  deliver(f.layer, *f.s, message(coap::Type::rst, coap::code::empty, 98), f.now);
  ASSERT_TRUE(f.layer.send_con(*f.s, separate_answer(7), 7, f.now));
  deliver(f.layer, *f.s, message(coap::Type::ack, coap::code::empty, 8), f.now);  // another id
  EXPECT_TRUE(f.peer.ended.empty());
  deliver(f.layer, *f.s, message(coap::Type::ack, coap::code::empty, 7), f.now);
  deliver(f.layer, *f.s, message(coap::Type::ack, coap::code::empty, 7), f.now);  // late duplicate ACK
  EXPECT_EQ(f.peer.ended.size(), 1u);
  EXPECT_TRUE(f.peer.anomalies.empty());
  EXPECT_EQ(f.peer.sent.size(), 1u);  // no RST for ACKs
  EXPECT_EQ(f.s->refcount(), 0);
}

TEST(Reliability, NonEmptyAckDoesNotEndAServerCon) {
  Fixture f;
  ASSERT_TRUE(f.layer.send_con(*f.s, separate_answer(9), 9, f.now));
  deliver(f.layer, *f.s, message(coap::Type::ack, coap::code::content, 9, {std::byte{7}}), f.now);
  ASSERT_EQ(f.peer.anomalies.size(), 1u);
  EXPECT_EQ(f.peer.anomalies[0], Anomaly::unexpected_ack);
  EXPECT_TRUE(f.peer.ended.empty());
  f.advance(2s);
  EXPECT_EQ(f.peer.sent.size(), 2u);  // still retransmitted
}

TEST(Reliability, FullTableSendsOnceAndSaysSo) {
  LayerSettings settings;
  settings.max_outstanding = 1;
  Fixture f(settings);
  EXPECT_TRUE(f.layer.send_con(*f.s, separate_answer(1), 1, f.now));
  EXPECT_FALSE(f.layer.send_con(*f.s, separate_answer(2), 2, f.now));
  EXPECT_EQ(f.peer.sent.size(), 2u);
  ASSERT_EQ(f.peer.anomalies.size(), 1u);
  EXPECT_EQ(f.peer.anomalies[0], Anomaly::outstanding_full);
  EXPECT_EQ(f.s->refcount(), 1);
  f.advance(2s);
  EXPECT_EQ(f.peer.sent.size(), 3u);  // only the tracked one again
  EXPECT_EQ(f.peer.sent.back().message_id, 1);
}

TEST(Reliability, WrappedMessageIdReplacesTheOlderCon) {
  Fixture f;
  ASSERT_TRUE(f.layer.send_con(*f.s, separate_answer(3), 3, f.now));
  ASSERT_TRUE(f.layer.send_con(*f.s, separate_answer(3), 3, f.now + 1s));
  ASSERT_EQ(f.peer.ended.size(), 1u);
  EXPECT_EQ(f.peer.ended[0].second, Ending::replaced);
  EXPECT_EQ(f.s->refcount(), 1);
}

TEST(Reliability, DropSessionEndsItsCons) {
  Fixture f;
  ASSERT_TRUE(f.layer.send_con(*f.s, separate_answer(3), 3, f.now));
  f.layer.drop_session(*f.s);
  ASSERT_EQ(f.peer.ended.size(), 1u);
  EXPECT_EQ(f.peer.ended[0].second, Ending::dropped);
  EXPECT_EQ(f.s->refcount(), 0);
  f.advance(10s);
  EXPECT_EQ(f.peer.sent.size(), 1u);
}

}  // namespace
}  // namespace coapgw::exchange
