// The sleepy-device queue across a restart: save on one clock, load on another (the steady clock
// starts over after a restart), ids and states kept, sent ones queued again, bounds on load,
// garbage refused without touching the queue.
#include "api/queue_snapshot.hpp"

#include <gtest/gtest.h>

namespace coapgw::api {
namespace {

using namespace std::chrono_literals;

DeviceRef identity(const std::string& id) {
  DeviceRef d;
  d.identity = id;
  return d;
}

DeviceRef plain(const std::string& address) {
  DeviceRef d;
  d.kind = DeviceRef::Kind::plain;
  d.remote = *Address::parse(address);
  return d;
}

DownlinkRequest put(const std::string& payload) {
  DownlinkRequest r;
  r.method = 3;
  r.path = "/led?x=1";
  r.uri_path = {"led"};
  r.uri_query = {"x=1"};
  r.content_format = 0;
  r.payload = payload;
  r.confirmable = false;
  return r;
}

TEST(QueueSnapshot, RoundTripKeepsIdsStatesAndTimesAcrossClocks) {
  DownlinkQueue before({4, 100});
  const Clocks old_clock{TimePoint(10h), 1'700'000'000'000};
  const auto a = before.push(identity("dev-a"), put(std::string("\0\xff", 2)), 5s, 60s, old_clock.steady).id;
  const auto b = before.push(plain("127.0.0.1:40000"), put("on"), 7s, 120s, old_clock.steady).id;
  const auto c = before.push(identity("dev-c"), put("off"), 5s, 60s, old_clock.steady).id;
  const auto d = before.push(identity("dev-c"), put("again"), 5s, 60s, old_clock.steady).id;
  ASSERT_EQ(before.take("dev-c", old_clock.steady).size(), 2u);
  DownlinkResult answered;
  answered.status = DownlinkStatus::answered;
  answered.answer.code = 69;
  answered.answer.payload = "21.5";
  answered.answer.remote = *Address::parse("127.0.0.1:40001");
  before.finish(c, answered, old_clock.steady);  // c answered, d sent when the restart came

  const std::string bytes = save_queue(before, old_clock);
  // 30 s later, on a steady clock that started over.
  const Clocks new_clock{TimePoint(5min), old_clock.unix_ms + 30'000};
  DownlinkQueue after({4, 100});
  std::string error;
  auto load = load_queue(after, bytes, new_clock, &error);
  ASSERT_TRUE(load) << error;
  EXPECT_EQ(load->queued, 3u);
  EXPECT_EQ(load->finished, 1u);
  EXPECT_EQ(load->dropped, 0u);

  const auto* qa = after.find(a);
  ASSERT_NE(qa, nullptr);
  EXPECT_EQ(qa->state, QueuedState::queued);
  EXPECT_EQ(qa->request.payload, std::string("\0\xff", 2));
  EXPECT_EQ(qa->request.uri_query, std::vector<std::string>{"x=1"});
  EXPECT_EQ(qa->request.content_format, 0);
  EXPECT_FALSE(qa->request.confirmable);
  EXPECT_EQ(qa->expires_at, new_clock.steady + 30s) << "60 s queue_for, 30 s of it spent while down";
  const auto* qb = after.find(b);
  ASSERT_NE(qb, nullptr);
  EXPECT_EQ(qb->device, plain("127.0.0.1:40000"));
  EXPECT_EQ(qb->timeout, 7s);
  ASSERT_NE(after.find(c), nullptr);
  EXPECT_EQ(after.find(c)->state, QueuedState::answered);
  ASSERT_TRUE(after.find(c)->result);
  EXPECT_EQ(after.find(c)->result->answer.payload, "21.5");
  EXPECT_EQ(after.find(c)->result->answer.remote, *Address::parse("127.0.0.1:40001"));
  EXPECT_EQ(after.find(d)->state, QueuedState::queued) << "its answer was lost with the restart";
  EXPECT_EQ(after.queued_for("dev-c"), 1u);
  EXPECT_EQ(after.queued_devices()->size(), 3u);
  // New ids do not collide with the restored ones.
  const auto next = after.push(identity("dev-e"), put("x"), 5s, 60s, new_clock.steady);
  EXPECT_GT(next.id, d);
}

TEST(QueueSnapshot, WhatExpiredWhileDownExpiresOnLoad) {
  DownlinkQueue before({4, 100});
  const Clocks old_clock{TimePoint(10h), 1'700'000'000'000};
  before.push(identity("dev-a"), put("x"), 5s, 10s, old_clock.steady);
  const Clocks new_clock{TimePoint(1min), old_clock.unix_ms + 60'000};
  DownlinkQueue after({4, 100});
  std::string error;
  ASSERT_TRUE(load_queue(after, save_queue(before, old_clock), new_clock, &error)) << error;
  EXPECT_EQ(after.expire(new_clock.steady), 1u);
  EXPECT_EQ(after.queued(), 0u);
}

TEST(QueueSnapshot, BoundsApplyOnLoad) {
  DownlinkQueue before({4, 100});
  const Clocks clock{TimePoint(10h), 1'700'000'000'000};
  for (int i = 0; i < 4; ++i) before.push(identity("dev-a"), put("x"), 5s, 60s, clock.steady);
  DownlinkQueue after({2, 100});  // api.max_queued_per_device lowered across the restart
  std::string error;
  auto load = load_queue(after, save_queue(before, clock), clock, &error);
  ASSERT_TRUE(load) << error;
  EXPECT_EQ(load->queued, 2u);
  EXPECT_EQ(load->dropped, 2u);
  EXPECT_EQ(after.queued_for("dev-a"), 2u);
}

TEST(QueueSnapshot, GarbageIsRefusedAndTheQueueUntouched) {
  DownlinkQueue queue({4, 100});
  std::string error;
  EXPECT_FALSE(load_queue(queue, "not cbor at all", {}, &error));
  EXPECT_FALSE(error.empty());
  // Valid CBOR of a snapshot with one bad record after a good one: nothing is loaded.
  DownlinkQueue before({4, 100});
  const Clocks clock{TimePoint(10h), 1'700'000'000'000};
  before.push(identity("dev-a"), put("x"), 5s, 60s, clock.steady);
  std::string bytes = save_queue(before, clock);
  bytes.resize(bytes.size() - 3);
  EXPECT_FALSE(load_queue(queue, bytes, clock, &error));
  EXPECT_EQ(queue.records(), 0u);
}

}  // namespace
}  // namespace coapgw::api
