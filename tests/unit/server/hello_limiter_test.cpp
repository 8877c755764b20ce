// server::HelloLimiter on a fake clock: per address and port, per second, bounded table.
#include <gtest/gtest.h>

#include "server/hello_limiter.hpp"

using namespace coapgw;
using namespace coapgw::server;
using namespace std::chrono_literals;

namespace {
const HelloLimiter::time_point t0 = HelloLimiter::time_point{} + 1000s;
}

TEST(HelloLimiter, BudgetPerAddressPerSecond) {
  HelloLimiter l(3);
  const auto a = Address::v4({10, 0, 0, 1}, 5000), b = Address::v4({10, 0, 0, 1}, 5001);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(l.allow(a, t0 + 100ms));
  EXPECT_FALSE(l.allow(a, t0 + 900ms));
  EXPECT_TRUE(l.allow(b, t0 + 900ms));  // another port: its own budget
  EXPECT_TRUE(l.allow(a, t0 + 1s));     // the next second
}

TEST(HelloLimiter, ManyAddressesStayWithinTheFixedTable) {
  HelloLimiter l(1);
  int allowed = 0;
  for (std::uint16_t port = 1; port <= 20000; ++port) allowed += l.allow(Address::v4({10, 0, 0, 2}, port), t0) ? 1 : 0;
  EXPECT_EQ(allowed, 20000);  // a collision resets the slot: never a refusal for a first hello
}
