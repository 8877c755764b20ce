// dtls::FailureBackoff on a fake clock: after `after` failures an address is held back, the hold
// doubles up to `max`, a success or `max` without failures forgets it, other addresses (other
// ports of the same host included) are unaffected, and the table stays within its bound.
#include <gtest/gtest.h>

#include "dtls/failure_backoff.hpp"

using namespace coapgw;
using namespace coapgw::dtls;
using namespace std::chrono_literals;

namespace {
const FailureBackoff::time_point t0 = FailureBackoff::time_point{} + 1000s;
Address a(std::uint16_t port = 5000) { return Address::v4({10, 0, 0, 1}, port); }
Address b(std::uint16_t port = 5000) { return Address::v4({10, 0, 0, 2}, port); }
FailureBackoff::Settings settings() { return {3, 1000ms, 8000ms, 4}; }
}  // namespace

TEST(FailureBackoff, HoldsBackAfterRepeatedFailuresOnly) {
  FailureBackoff f(settings());
  f.on_failure(a(), t0);
  f.on_failure(a(), t0);
  EXPECT_FALSE(f.blocked(a(), t0));
  f.on_failure(a(), t0);
  EXPECT_TRUE(f.blocked(a(), t0));
  EXPECT_TRUE(f.blocked(a(), t0 + 999ms));
  EXPECT_FALSE(f.blocked(a(), t0 + 1000ms));
  EXPECT_FALSE(f.blocked(a(6000), t0));  // another port of the same host (a NAT neighbour) is not
  EXPECT_FALSE(f.blocked(b(), t0));      // nor other hosts
}

TEST(FailureBackoff, HoldDoublesUpToMax) {
  FailureBackoff f(settings());
  auto t = t0;
  for (int i = 0; i < 3; ++i) f.on_failure(a(), t);
  EXPECT_TRUE(f.blocked(a(), t + 999ms));
  t += 1s;
  f.on_failure(a(), t);  // 4th: 2 s
  EXPECT_TRUE(f.blocked(a(), t + 1999ms));
  EXPECT_FALSE(f.blocked(a(), t + 2s));
  t += 2s;
  f.on_failure(a(), t);  // 5th: 4 s
  EXPECT_TRUE(f.blocked(a(), t + 3999ms));
  t += 4s;
  f.on_failure(a(), t);  // 6th: 8 s (max)
  t += 7s;
  f.on_failure(a(), t);  // 7th: still 8 s
  EXPECT_TRUE(f.blocked(a(), t + 7999ms));
  EXPECT_FALSE(f.blocked(a(), t + 8000ms));
}

TEST(FailureBackoff, SuccessForgets) {
  FailureBackoff f(settings());
  for (int i = 0; i < 3; ++i) f.on_failure(a(), t0);
  f.on_success(a());
  EXPECT_FALSE(f.blocked(a(), t0));
  EXPECT_EQ(f.size(), 0u);
  f.on_failure(a(), t0);
  EXPECT_FALSE(f.blocked(a(), t0));  // counting starts again
}

TEST(FailureBackoff, QuietForMaxForgets) {
  FailureBackoff f(settings());
  f.on_failure(a(), t0);
  f.on_failure(a(), t0);
  f.on_failure(a(), t0 + 8s);  // the first two are forgotten: this is the first again
  EXPECT_FALSE(f.blocked(a(), t0 + 8s));
}

TEST(FailureBackoff, DisabledWithZero) {
  FailureBackoff f({0, 1000ms, 8000ms, 4});
  for (int i = 0; i < 10; ++i) f.on_failure(a(), t0);
  EXPECT_FALSE(f.blocked(a(), t0));
  EXPECT_EQ(f.size(), 0u);
}

TEST(FailureBackoff, TableIsBounded) {
  FailureBackoff f(settings());
  for (std::uint8_t i = 0; i < 10; ++i) {
    for (int k = 0; k < 3; ++k) f.on_failure(Address::v4({10, 1, 0, i}, 1), t0 + std::chrono::seconds(i));
  }
  EXPECT_EQ(f.size(), 4u);
  EXPECT_EQ(f.evicted(), 6u);
  // The newest addresses are the ones kept.
  EXPECT_TRUE(f.blocked(Address::v4({10, 1, 0, 9}, 1), t0 + 9s));
  EXPECT_FALSE(f.blocked(Address::v4({10, 1, 0, 0}, 1), t0 + 9s));
}
