#include "server/rate_limiter.hpp"

#include <gtest/gtest.h>

namespace coapgw::server {
namespace {

using namespace std::chrono_literals;
using TP = RateLimiter::time_point;

TEST(RateLimiter, DisabledAllowsEverything) {
  RateLimiter limiter({0, 0});
  EXPECT_FALSE(limiter.enabled());
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(limiter.take("dev", TP{}));
}

TEST(RateLimiter, BurstThenOneTokenPerInterval) {
  RateLimiter limiter({2, 3});  // 2 per second, bucket of 3
  const TP t0{};
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(limiter.take("dev", t0)) << i;
  auto refused = limiter.take("dev", t0);
  ASSERT_TRUE(refused);
  EXPECT_EQ(*refused, 1u);  // the next token comes in 0.5 s: Max-Age is whole seconds, at least 1
  EXPECT_TRUE(limiter.take("dev", t0 + 400ms));
  EXPECT_FALSE(limiter.take("dev", t0 + 500ms));
  EXPECT_TRUE(limiter.take("dev", t0 + 500ms));
  EXPECT_FALSE(limiter.take("dev", t0 + 1000ms));
}

TEST(RateLimiter, MaxAgeSaysWhenTheNextTokenComes) {
  RateLimiter limiter({0.1, 1});  // one request per 10 s
  EXPECT_FALSE(limiter.take("slow", TP{}));
  auto refused = limiter.take("slow", TP{} + 1s);
  ASSERT_TRUE(refused);
  EXPECT_EQ(*refused, 9u);
}

TEST(RateLimiter, DevicesHaveTheirOwnBuckets) {
  RateLimiter limiter({1, 1});
  EXPECT_FALSE(limiter.take("noisy", TP{}));
  EXPECT_TRUE(limiter.take("noisy", TP{}));
  EXPECT_TRUE(limiter.take("noisy", TP{}));
  EXPECT_FALSE(limiter.take("quiet", TP{}));  // not charged for the noisy one
}

TEST(RateLimiter, DefaultBurstIsOneSecondsWorth) {
  RateLimiter limiter({5, 0});
  int allowed = 0;
  for (int i = 0; i < 20; ++i) allowed += limiter.take("dev", TP{}) ? 0 : 1;
  EXPECT_EQ(allowed, 5);
}

TEST(RateLimiter, BoundedTableDropsRefilledBucketsThenLeavesNewDevicesUntracked) {
  RateLimiter limiter({1, 1, 2});
  const TP t0{};
  EXPECT_FALSE(limiter.take("a", t0));
  EXPECT_FALSE(limiter.take("b", t0));
  EXPECT_EQ(limiter.size(), 2u);
  // Full, and both buckets are in use: a third device is not tracked (allowed, never refused).
  EXPECT_FALSE(limiter.take("c", t0));
  EXPECT_FALSE(limiter.take("c", t0));
  EXPECT_EQ(limiter.size(), 2u);
  // Once a and b have refilled they are dropped and c gets a bucket.
  EXPECT_FALSE(limiter.take("c", t0 + 2s));
  EXPECT_EQ(limiter.size(), 1u);
  EXPECT_TRUE(limiter.take("c", t0 + 2s));
}

}  // namespace
}  // namespace coapgw::server
