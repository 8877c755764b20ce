// coapgw-bench: a device's retry back-off (RetryPolicy) and the --setup-deadline / --retry-backoff flags.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "options.hpp"
#include "retry_policy.hpp"

namespace coapgw::bench {
namespace {

constexpr std::uint64_t s = 1'000'000'000;

TEST(RetryPolicy, NoDeadlineMeansNoRetry) {
  const RetryPolicy policy{2 * s, 64 * s, 0};
  EXPECT_FALSE(policy.next_attempt(1, 0, 0.5));
}

TEST(RetryPolicy, DoublesPerFailureUpToTheCap) {
  const RetryPolicy policy{2 * s, 64 * s, 100000 * s};
  // draw 1.0: the full delay; the jitter share is [1/2, 1].
  EXPECT_EQ(*policy.next_attempt(1, 10 * s, 1.0), 12 * s);
  EXPECT_EQ(*policy.next_attempt(2, 10 * s, 1.0), 14 * s);
  EXPECT_EQ(*policy.next_attempt(3, 10 * s, 1.0), 18 * s);
  EXPECT_EQ(*policy.next_attempt(6, 10 * s, 1.0), 74 * s);
  EXPECT_EQ(*policy.next_attempt(7, 10 * s, 1.0), 74 * s);   // capped at 64 s
  EXPECT_EQ(*policy.next_attempt(400, 10 * s, 1.0), 74 * s); // no overflow for many failures
}

TEST(RetryPolicy, JitterSpreadsACrowdOverHalfTheDelay) {
  const RetryPolicy policy{2 * s, 64 * s, 100000 * s};
  EXPECT_EQ(*policy.next_attempt(3, 0, 0.0), 4 * s);  // 8 s halved
  const auto mid = *policy.next_attempt(3, 0, 0.5);
  EXPECT_GT(mid, 4 * s);
  EXPECT_LT(mid, 8 * s);
  EXPECT_EQ(*policy.next_attempt(3, 0, 7.0), 8 * s);   // draws out of range are clamped
  EXPECT_EQ(*policy.next_attempt(3, 0, -1.0), 4 * s);
}

TEST(RetryPolicy, GivesUpWhenTheNextAttemptWouldMissTheDeadline) {
  const RetryPolicy policy{2 * s, 64 * s, 20 * s};
  EXPECT_EQ(*policy.next_attempt(1, 17 * s, 1.0), 19 * s);
  EXPECT_FALSE(policy.next_attempt(1, 18 * s, 1.0));  // would start exactly at the deadline
  EXPECT_FALSE(policy.next_attempt(4, 5 * s, 1.0));   // 16 s later is past it
  EXPECT_FALSE(policy.next_attempt(0, 0, 1.0));       // nothing failed: nothing to retry
}

std::optional<Options> parse(std::vector<std::string> args, std::string& error) {
  std::vector<char*> argv;
  static std::string name = "coapgw-bench";
  argv.push_back(name.data());
  for (auto& a : args) argv.push_back(a.data());
  return parse_options(static_cast<int>(argv.size()), argv.data(), error);
}

TEST(RetryOptions, SetupDeadlineAndBackoffAreBoundedFlags) {
  std::string error;
  auto o = parse({"--mode", "hold", "--cid", "--setup-deadline", "1500", "--retry-backoff", "3"}, error);
  ASSERT_TRUE(o) << error;
  EXPECT_DOUBLE_EQ(o->setup_deadline, 1500);
  EXPECT_DOUBLE_EQ(o->retry_backoff, 3);
  o = parse({"--mode", "hold"}, error);
  ASSERT_TRUE(o);
  EXPECT_DOUBLE_EQ(o->setup_deadline, 0);  // default: the old deadline, no retries
  EXPECT_FALSE(parse({"--setup-deadline", "-1"}, error));
  EXPECT_FALSE(parse({"--setup-deadline", "90000"}, error));
  EXPECT_FALSE(parse({"--retry-backoff", "0"}, error));
}

}  // namespace
}  // namespace coapgw::bench
