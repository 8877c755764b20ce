#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "exchange/exchange_cache.hpp"
#include "exchange/transmission.hpp"

using namespace coapgw::exchange;
using namespace std::chrono_literals;

namespace {
const auto t0 = std::chrono::steady_clock::time_point{} + 100s;

TEST(ExchangeCache, PendingThenAnswered) {
  ExchangeCache c(16, 247s);
  EXPECT_EQ(c.find(1, 7, t0), nullptr);
  c.insert(1, 7, t0);
  auto* e = c.find(1, 7, t0);
  ASSERT_NE(e, nullptr);
  EXPECT_FALSE(e->answered);
  std::byte answer[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
  c.set_response(1, 7, answer);
  e = c.find(1, 7, t0 + 1s);
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->answered);
  EXPECT_EQ(e->response().size(), 3u);
  EXPECT_EQ(e->response()[2], std::byte{3});
  EXPECT_EQ(c.find(2, 7, t0), nullptr);  // other session, same mid
}

TEST(ExchangeCache, LongAnswersKeptWhole) {
  ExchangeCache c(16, 247s);
  c.insert(9, 1, t0);
  std::vector<std::byte> big(300);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i);
  c.set_response(9, 1, big);
  auto* e = c.find(9, 1, t0);
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->response().size(), 300u);
  EXPECT_TRUE(std::equal(big.begin(), big.end(), e->response().begin()));
}

TEST(ExchangeCache, ExpiresAfterLifetime) {
  ExchangeCache c(16, 247s);
  c.insert(1, 7, t0);
  c.insert(1, 8, t0 + 10s);
  EXPECT_NE(c.find(1, 7, t0 + 246s), nullptr);
  EXPECT_EQ(c.find(1, 7, t0 + 247s), nullptr);
  EXPECT_EQ(c.expire(t0 + 247s), 1u);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_NE(c.find(1, 8, t0 + 247s), nullptr);
}

TEST(ExchangeCache, BoundedOldestEvicted) {
  ExchangeCache c(3, 247s);
  for (std::uint16_t m = 0; m < 5; ++m) c.insert(1, m, t0);
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(c.evicted(), 2u);
  EXPECT_EQ(c.find(1, 0, t0), nullptr);
  EXPECT_NE(c.find(1, 4, t0), nullptr);
}

TEST(ExchangeCache, ReinsertAfterExpiryReplaces) {
  ExchangeCache c(8, 10s);
  c.insert(1, 7, t0);
  c.insert(1, 7, t0 + 20s);  // the first expired (and is dropped by insert)
  auto* e = c.find(1, 7, t0 + 25s);
  ASSERT_NE(e, nullptr);
  EXPECT_FALSE(e->answered);
  EXPECT_EQ(c.size(), 1u);
}

// Issue 11: one message id inserted again and again with new tokens (a spoofer, or any device)
// must not grow the cache past its bound; each live entry keeps its own token.
TEST(ExchangeCache, ReusedIdsWithNewTokensStayWithinTheBound) {
  ExchangeCache c(4, 247s);
  for (std::uint32_t i = 0; i < 1000; ++i) c.insert(1, 7, t0, i);
  EXPECT_LE(c.size(), 4u);
  EXPECT_EQ(c.find(1, 7, t0)->token_fp, 999u);
  const std::byte answer[] = {std::byte{1}};
  c.set_response(1, 7, answer, 998);  // an answer for the replaced exchange is not stored
  EXPECT_FALSE(c.find(1, 7, t0)->answered);
  c.set_response(1, 7, answer, 999);
  EXPECT_TRUE(c.find(1, 7, t0)->answered);
  EXPECT_EQ(ExchangeCache::fingerprint(std::span<const std::byte>{}), ExchangeCache::fingerprint({}));
  const std::byte a[] = {std::byte{'a'}, std::byte{'b'}}, b[] = {std::byte{'a'}, std::byte{'b'}, std::byte{0}};
  EXPECT_NE(ExchangeCache::fingerprint(a), ExchangeCache::fingerprint(b));
}

TEST(TransmissionParameters, Rfc7252Defaults) {
  TransmissionParameters p;  // ACK_TIMEOUT 2 s, factor 1.5, MAX_RETRANSMIT 4
  EXPECT_EQ(p.max_transmit_span(), 45s);
  EXPECT_EQ(p.max_transmit_wait(), 93s);
  EXPECT_EQ(p.exchange_lifetime(), 247s);
  EXPECT_EQ(p.non_lifetime(), 145s);
}
}  // namespace
