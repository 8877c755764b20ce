// DownlinkQueue with a fake clock: bounds, states, expiry, take and finish.
#include "api/downlink_queue.hpp"

#include <gtest/gtest.h>

namespace coapgw::api {
namespace {

using namespace std::chrono_literals;

DeviceRef dev(const std::string& id) {
  DeviceRef d;
  d.identity = id;
  return d;
}

DownlinkRequest req(const std::string& path) {
  DownlinkRequest r;
  r.path = path;
  return r;
}

class QueueTest : public ::testing::Test {
 protected:
  TimePoint now{std::chrono::hours(1)};
  DownlinkQueue queue{{2, 3}};
  std::uint64_t push(const std::string& device, const std::string& path, std::chrono::milliseconds queue_for = 60s) {
    auto r = queue.push(dev(device), req(path), 5s, queue_for, now);
    EXPECT_FALSE(r.error);
    return r.id;
  }
};

TEST_F(QueueTest, PerDeviceAndTotalBounds) {
  push("a", "/1");
  push("a", "/2");
  auto full = queue.push(dev("a"), req("/3"), 5s, 60s, now);
  EXPECT_EQ(full.error, DownlinkQueue::PushError::device_full);
  push("b", "/1");
  auto total = queue.push(dev("c"), req("/1"), 5s, 60s, now);
  EXPECT_EQ(total.error, DownlinkQueue::PushError::total_full);
  EXPECT_EQ(queue.queued(), 3u);
  EXPECT_EQ(queue.queued_for("a"), 2u);
  EXPECT_EQ(queue.queued_devices()->size(), 2u);
}

TEST_F(QueueTest, TakeHandsOutOldestFirstAndMarksSent) {
  const auto first = push("a", "/1");
  const auto second = push("a", "/2");
  push("b", "/x");
  auto taken = queue.take("a", now);
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].id, first);
  EXPECT_EQ(taken[1].request.path, "/2");
  EXPECT_EQ(queue.find(second)->state, QueuedState::sent);
  EXPECT_EQ(queue.queued(), 1u);
  EXPECT_TRUE(queue.take("a", now).empty());
  EXPECT_TRUE(queue.take("nobody", now).empty());
  // Sent requests do not count against the bound.
  push("a", "/3");
  push("a", "/4");
}

TEST_F(QueueTest, FinishOutcomes) {
  const auto answered = push("a", "/1");
  const auto timed_out = push("a", "/2");
  const auto gone = push("b", "/3");
  queue.take("a", now);
  queue.take("b", now);
  DownlinkResult ok;
  ok.status = DownlinkStatus::answered;
  ok.answer.code = 69;
  queue.finish(answered, ok, now);
  EXPECT_EQ(queue.find(answered)->state, QueuedState::answered);
  EXPECT_EQ(queue.find(answered)->result->answer.code, 69);
  DownlinkResult timeout;
  timeout.status = DownlinkStatus::timeout;
  queue.finish(timed_out, timeout, now);
  EXPECT_EQ(queue.find(timed_out)->state, QueuedState::expired);
  // The device went away between take and send: queued again, still bounded by its expiry.
  DownlinkResult no_session;
  queue.finish(gone, no_session, now);
  EXPECT_EQ(queue.find(gone)->state, QueuedState::queued);
  EXPECT_EQ(queue.queued_for("b"), 1u);
  // finish() of something not sent changes nothing.
  queue.finish(gone, ok, now);
  EXPECT_EQ(queue.find(gone)->state, QueuedState::queued);
}

TEST_F(QueueTest, ExpiryIsDrivenByTheClock) {
  const auto short_one = push("a", "/1", 10s);
  const auto long_one = push("a", "/2", 60s);
  EXPECT_EQ(queue.next_deadline(), now + 10s);
  EXPECT_EQ(queue.expire(now + 9s), 0u);
  EXPECT_EQ(queue.expire(now + 10s), 1u);
  EXPECT_EQ(queue.find(short_one)->state, QueuedState::expired);
  EXPECT_EQ(queue.find(long_one)->state, QueuedState::queued);
  EXPECT_EQ(queue.queued(), 1u);
  EXPECT_EQ(queue.next_deadline(), now + 60s);
  // Finished records are dropped after their retention.
  EXPECT_EQ(queue.expire(now + 10s + finished_retention), 1u);
  EXPECT_EQ(queue.find(short_one), nullptr);
  EXPECT_NE(queue.find(long_one), nullptr);
}

TEST_F(QueueTest, TakeSkipsWhatIsDue) {
  const auto id = push("a", "/1", 10s);
  EXPECT_TRUE(queue.take("a", now + 10s).empty());
  EXPECT_EQ(queue.expire(now + 10s), 1u);
  EXPECT_EQ(queue.find(id)->state, QueuedState::expired);
}

TEST_F(QueueTest, CancelOnlyWhileQueued) {
  const auto id = push("a", "/1");
  EXPECT_EQ(queue.cancel(id, now), DownlinkQueue::CancelResult::cancelled);
  EXPECT_EQ(queue.find(id)->state, QueuedState::cancelled);
  EXPECT_EQ(queue.queued(), 0u);
  EXPECT_EQ(queue.cancel(id, now), DownlinkQueue::CancelResult::not_queued);
  EXPECT_EQ(queue.cancel(999, now), DownlinkQueue::CancelResult::not_found);
  const auto sent = push("a", "/2");
  queue.take("a", now);
  EXPECT_EQ(queue.cancel(sent, now), DownlinkQueue::CancelResult::not_queued);
}

TEST_F(QueueTest, FinishedRecordsAreBounded) {
  // total = 3: at most 3 finished records are kept, the oldest go first.
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(push("a", "/" + std::to_string(i)));
    queue.cancel(ids.back(), now);
  }
  EXPECT_EQ(queue.records(), 3u);
  EXPECT_EQ(queue.find(ids[0]), nullptr);
  EXPECT_EQ(queue.find(ids[1]), nullptr);
  EXPECT_NE(queue.find(ids[4]), nullptr);
}

TEST_F(QueueTest, NewLimitsApplyToLaterPushes) {
  push("a", "/1");
  push("a", "/2");
  queue.set_limits({1, 3});
  EXPECT_EQ(queue.queued_for("a"), 2u);  // nothing dropped
  EXPECT_EQ(queue.push(dev("a"), req("/3"), 5s, 60s, now).error, DownlinkQueue::PushError::device_full);
  EXPECT_FALSE(queue.push(dev("b"), req("/3"), 5s, 60s, now).error);
}

}  // namespace
}  // namespace coapgw::api
