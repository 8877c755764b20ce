// CidIndex (RFC 9146 Connection IDs of one worker): layout of issued CIDs, uniqueness among live
// sessions, the worker a CID names, and what happens when no CID can be issued. A scripted
// random source stands in for RAND_bytes.
#include <gtest/gtest.h>

#include <deque>
#include <vector>

#include "server/cid_index.hpp"

namespace coapgw::server {
namespace {

using Bytes = std::vector<std::byte>;

// Hands out the scripted byte values in turn (each fills a whole request with one value).
struct Script {
  std::deque<int> values;
  int calls = 0;
  bool operator()(std::span<std::byte> out) {
    ++calls;
    if (values.empty()) return false;
    for (auto& b : out) b = static_cast<std::byte>(values.front());
    values.pop_front();
    return true;
  }
};

session::Session* fake(int n) { return reinterpret_cast<session::Session*>(static_cast<std::uintptr_t>(n * 16)); }

TEST(CidIndex, IssuesNodeIdThenWorkerThenRandomBytes) {
  auto script = std::make_shared<Script>(Script{{0xab}});
  CidIndex index(7, 3, [script](std::span<std::byte> b) { return (*script)(b); });
  Bytes cid(6);
  ASSERT_TRUE(index.issue(cid));
  EXPECT_EQ(cid, (Bytes{std::byte{7}, std::byte{3}, std::byte{0xab}, std::byte{0xab}, std::byte{0xab}, std::byte{0xab}}));
  EXPECT_EQ(CidIndex::worker_of(cid), 3);
  EXPECT_EQ(CidIndex::worker_of(std::span(cid).first(2)), std::nullopt);
}

TEST(CidIndex, RetriesUntilNoLiveSessionHoldsTheCid) {
  auto script = std::make_shared<Script>(Script{{1, 1, 2}});
  CidIndex index(0, 0, [script](std::span<std::byte> b) { return (*script)(b); });
  Bytes first(4);
  ASSERT_TRUE(index.issue(first));
  ASSERT_TRUE(index.insert(first, fake(1)));
  Bytes second(4);
  ASSERT_TRUE(index.issue(second));  // 1 is taken: drawn again
  EXPECT_EQ(second[2], std::byte{2});
  EXPECT_EQ(script->calls, 3);
  EXPECT_FALSE(index.insert(first, fake(2)));  // one session per CID
  EXPECT_TRUE(index.insert(first, fake(1)));   // the same one again is fine
  EXPECT_EQ(index.find(first), fake(1));
  index.erase(first, fake(2));  // not its session: kept
  EXPECT_EQ(index.find(first), fake(1));
  index.erase(first, fake(1));
  EXPECT_EQ(index.find(first), nullptr);
  EXPECT_EQ(index.size(), 0u);
}

TEST(CidIndex, GivesUpAfterMaxTriesOrWhenItCannotNameItsWorker) {
  auto script = std::make_shared<Script>();
  for (int i = 0; i < CidIndex::max_tries + 1; ++i) script->values.push_back(9);
  CidIndex index(0, 1, [script](std::span<std::byte> b) { return (*script)(b); });
  Bytes taken(3);
  ASSERT_TRUE(index.issue(taken));
  index.insert(taken, fake(1));
  Bytes cid(3);
  EXPECT_FALSE(index.issue(cid));  // every draw collides
  EXPECT_EQ(script->calls, CidIndex::max_tries + 1);
  CidIndex too_many(0, 256, [](std::span<std::byte>) { return true; });
  EXPECT_FALSE(too_many.issue(cid));
  CidIndex short_cid(0, 1, [](std::span<std::byte>) { return true; });
  Bytes two(2);
  EXPECT_FALSE(short_cid.issue(two));
  CidIndex no_random(0, 1, [](std::span<std::byte>) { return false; });
  EXPECT_FALSE(no_random.issue(cid));
}

}  // namespace
}  // namespace coapgw::server
