#include "exchange/observe_order.hpp"

#include <gtest/gtest.h>

namespace coapgw::exchange {
namespace {

using namespace std::chrono_literals;

TEST(ObserveOrder, NewerNumbersAreFreshOlderAndRepeatedAreNot) {
  ObserveOrder order;
  TimePoint t0{};
  EXPECT_TRUE(order.take(5, t0));
  EXPECT_TRUE(order.take(6, t0 + 1s));
  EXPECT_FALSE(order.take(6, t0 + 2s));  // the same again
  EXPECT_FALSE(order.take(4, t0 + 3s));  // reordered: older
  EXPECT_TRUE(order.take(100, t0 + 4s));
}

TEST(ObserveOrder, WrapsAroundAt24Bits) {
  ObserveOrder order;
  TimePoint t0{};
  EXPECT_TRUE(order.take(0xfffffe, t0));
  EXPECT_TRUE(order.take(1, t0 + 1s));         // wrapped: 1 is ahead of 0xfffffe
  EXPECT_FALSE(order.take(0xffffff, t0 + 2s));  // behind 1 across the wrap
}

TEST(ObserveOrder, AnythingIsFreshAfter128Seconds) {
  ObserveOrder order;
  TimePoint t0{};
  EXPECT_TRUE(order.take(1000, t0));
  EXPECT_FALSE(order.take(10, t0 + 128s));
  EXPECT_TRUE(order.take(10, t0 + 129s));
}

}  // namespace
}  // namespace coapgw::exchange
