#include "dtls/registry_cache.hpp"

#include <gtest/gtest.h>

namespace coapgw::dtls {
namespace {

using namespace std::chrono_literals;
using TP = RegistryCache::time_point;

RegistryEntry known(std::string key, std::string tenant = "", bool banned = false) {
  RegistryEntry e;
  e.known = true;
  e.key = SecretString(std::move(key));
  e.tenant = std::move(tenant);
  e.banned = banned;
  return e;
}

TEST(RegistryCache, PositiveAndNegativeEntriesExpireAfterTheirOwnTtl) {
  RegistryCache cache({10s, 2s, 100});
  const TP t0{};
  cache.put("dev", known("k", "acme"), t0);
  cache.put("ghost", RegistryEntry{}, t0);
  ASSERT_NE(cache.find_fresh("dev", t0 + 1s), nullptr);
  EXPECT_EQ(cache.find_fresh("dev", t0 + 1s)->tenant, "acme");
  EXPECT_TRUE(cache.find_fresh("dev", t0 + 1s)->usable());
  ASSERT_NE(cache.find_fresh("ghost", t0 + 1s), nullptr);
  EXPECT_FALSE(cache.find_fresh("ghost", t0 + 1s)->usable());
  EXPECT_EQ(cache.find_fresh("ghost", t0 + 2s), nullptr);
  EXPECT_NE(cache.find_fresh("dev", t0 + 9s), nullptr);
  EXPECT_EQ(cache.find_fresh("dev", t0 + 10s), nullptr);

  std::vector<std::string> expired;
  cache.expire(t0 + 3s, &expired);
  EXPECT_TRUE(expired.empty());  // the negative entry went, and is not reported
  EXPECT_EQ(cache.find("ghost"), nullptr);
  EXPECT_NE(cache.find("dev"), nullptr);
  cache.expire(t0 + 10s, &expired);
  EXPECT_EQ(expired, std::vector<std::string>{"dev"});
  EXPECT_EQ(cache.size(), 0u);
}

TEST(RegistryCache, ARefreshedEntryLivesFromItsNewAnswer) {
  RegistryCache cache({10s, 2s, 100});
  const TP t0{};
  cache.put("dev", known("old"), t0);
  cache.put("dev", known("new"), t0 + 8s);
  std::vector<std::string> expired;
  cache.expire(t0 + 12s, &expired);  // the first answer's queue slot is stale: skipped
  EXPECT_TRUE(expired.empty());
  ASSERT_NE(cache.find("dev"), nullptr);
  EXPECT_EQ(std::string(cache.find("dev")->key), "new");
  cache.expire(t0 + 18s, &expired);
  EXPECT_EQ(expired.size(), 1u);
}

TEST(RegistryCache, BannedAndUnknownEntriesAreNotUsable) {
  RegistryCache cache({10s, 2s, 100});
  cache.put("banned", known("k", "", true), TP{});
  EXPECT_FALSE(cache.find("banned")->usable());
  EXPECT_TRUE(cache.find("banned")->known);
}

TEST(RegistryCache, AFullCacheDropsItsOldestNegativeEntryFirst) {
  RegistryCache cache({10s, 10s, 3});
  const TP t0{};
  std::vector<std::string> evicted;
  cache.put("a", known("1"), t0, &evicted);
  cache.put("b", RegistryEntry{}, t0 + 1s, &evicted);
  cache.put("c", known("3"), t0 + 2s, &evicted);
  cache.put("d", known("4"), t0 + 3s, &evicted);  // the negative "b" goes, though "a" is older
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.find("b"), nullptr);
  EXPECT_NE(cache.find("a"), nullptr);
  EXPECT_EQ(cache.evictions(), 1u);
  EXPECT_TRUE(evicted.empty());  // negative entries are not reported
  cache.put("e", known("5"), t0 + 4s, &evicted);  // no negative left: the oldest known goes
  EXPECT_EQ(cache.find("a"), nullptr);
  EXPECT_NE(cache.find("c"), nullptr);
  EXPECT_EQ(cache.evictions(), 2u);
  EXPECT_EQ(evicted, std::vector<std::string>{"a"});  // reported: a live session may use it
}

TEST(RegistryCache, AFloodOfUnknownIdentitiesKeepsTheKnownEntries) {
  RegistryCache cache({10s, 2s, 4});
  const TP t0{};
  std::vector<std::string> evicted;
  cache.put("dev", known("k"), t0, &evicted);
  for (int i = 0; i < 100; ++i) cache.put("ghost-" + std::to_string(i), RegistryEntry{}, t0 + 1s, &evicted);
  EXPECT_EQ(cache.size(), 4u);
  ASSERT_NE(cache.find("dev"), nullptr);
  EXPECT_TRUE(cache.find("dev")->usable());
  EXPECT_NE(cache.find("ghost-99"), nullptr);  // the newest negative answers are kept
  EXPECT_TRUE(evicted.empty());
  // Known entries only: a negative answer is not stored rather than push one out.
  RegistryCache full({10s, 2s, 2});
  full.put("a", known("1"), t0);
  full.put("b", known("2"), t0);
  full.put("ghost", RegistryEntry{}, t0, &evicted);
  EXPECT_EQ(full.find("ghost"), nullptr);
  EXPECT_NE(full.find("a"), nullptr);
  EXPECT_NE(full.find("b"), nullptr);
  EXPECT_EQ(full.evictions(), 1u);
  EXPECT_TRUE(evicted.empty());
}

TEST(RegistryCache, ZeroEntriesCachesNothing) {
  RegistryCache cache({10s, 10s, 0});
  cache.put("a", known("1"), TP{});
  EXPECT_EQ(cache.find("a"), nullptr);
}

}  // namespace
}  // namespace coapgw::dtls
