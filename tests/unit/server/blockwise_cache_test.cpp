// BlockwiseCache: per-session and per-worker bounds, answers tied to their request, fresh answers
// replacing kept ones (issue 11, point 5). No sockets, no clock.
#include "server/blockwise_cache.hpp"

#include <gtest/gtest.h>

#include <string>

namespace coapgw::server {
namespace {

using namespace std::chrono_literals;
using TimePoint = BlockwiseCache::TimePoint;

const TimePoint t0{};
constexpr std::uint8_t get = 1, post = 2, fetch = 5, content = 0x45;

std::vector<std::byte> bytes(std::string_view s) {
  std::vector<std::byte> out;
  for (char c : s) out.push_back(static_cast<std::byte>(c));
  return out;
}

BlockwiseCache::Answer answer(std::string_view body, std::string_view etag = {}, TimePoint expires = t0 + 10s) {
  BlockwiseCache::Answer a;
  a.code = content;
  a.content_format = 0;
  if (!etag.empty()) a.options.emplace_back(4, bytes(etag));
  a.body = bytes(body);
  a.expires = expires;
  return a;
}

TEST(BlockwiseKeys, AnswerKeyTellsRequestsApart) {
  const auto base = answer_key(1, get, "/a", "x=1", std::nullopt, {});
  EXPECT_EQ(base, answer_key(1, get, "/a", "x=1", std::nullopt, {}));
  EXPECT_NE(base, answer_key(2, get, "/a", "x=1", std::nullopt, {}));       // another session
  EXPECT_NE(base, answer_key(1, post, "/a", "x=1", std::nullopt, {}));      // another method
  EXPECT_NE(base, answer_key(1, get, "/a", "x=2", std::nullopt, {}));       // another query
  EXPECT_NE(base, answer_key(1, get, "/a", "x=1", std::uint16_t{50}, {}));  // another Accept
  EXPECT_NE(answer_key(1, get, "/a", "x=1", std::uint16_t{0}, {}), base);   // Accept 0 is not "none"
  const auto sel1 = bytes("a"), sel2 = bytes("b");
  EXPECT_NE(answer_key(1, fetch, "/a", "", std::nullopt, sel1), answer_key(1, fetch, "/a", "", std::nullopt, sel2));
  // Length-prefixed fields: moving bytes from the path into the query is another key.
  EXPECT_NE(answer_key(1, get, "/ab", "", std::nullopt, {}), answer_key(1, get, "/a", "b", std::nullopt, {}));
}

TEST(BlockwiseKeys, UploadKeyIncludesRequestTag) {
  const auto t1 = bytes("\x01"), t2 = bytes("\x02");
  EXPECT_NE(upload_key(1, get, "/u", "", t1), upload_key(1, get, "/u", "", t2));
  EXPECT_EQ(upload_key(1, get, "/u", "", t1), upload_key(1, get, "/u", "", t1));
}

TEST(BlockwiseKeys, DerivedEtagFollowsTheRepresentation) {
  const auto a = bytes("hello"), b = bytes("hellp");
  EXPECT_EQ(derived_etag(content, 0, a), derived_etag(content, 0, a));
  EXPECT_NE(derived_etag(content, 0, a), derived_etag(content, 0, b));
  EXPECT_NE(derived_etag(content, 0, a), derived_etag(content, 50, a));
  EXPECT_EQ(derived_etag(content, 0, a).size(), 8u);
}

TEST(BlockwiseCacheAnswers, FreshAnswerReplacesKeptOneEvenOfTheSameSize) {
  BlockwiseCache c;
  const auto k = answer_key(1, get, "/big", "", std::nullopt, {});
  c.store_answer(1, k, answer("aaaa", "v1"));
  c.store_answer(1, k, answer("bbbb", "v2"));
  auto* a = c.find_answer(k, t0);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->body, bytes("bbbb"));
  ASSERT_EQ(a->options.size(), 1u);
  EXPECT_EQ(a->options[0].second, bytes("v2"));  // the ETag is kept with the body it belongs to
  EXPECT_EQ(c.answers(), 1u);
  EXPECT_EQ(c.answer_bytes(), 4u);
}

TEST(BlockwiseCacheAnswers, ExpireAndTouch) {
  BlockwiseCache c;
  const auto k = answer_key(1, get, "/big", "", std::nullopt, {});
  c.store_answer(1, k, answer("aaaa", "", t0 + 10s));
  EXPECT_EQ(c.find_answer(k, t0 + 10s), nullptr);  // expired is not served
  c.touch_answer(k, t0 + 20s);
  EXPECT_NE(c.find_answer(k, t0 + 15s), nullptr);
  c.expire(t0 + 19s);
  EXPECT_EQ(c.answers(), 1u);
  c.expire(t0 + 20s);
  EXPECT_EQ(c.answers(), 0u);
  EXPECT_EQ(c.answer_bytes(), 0u);
}

TEST(BlockwiseCacheAnswers, SessionBoundEvictsOnlyItsOwnOldest) {
  BlockwiseCache c(BlockwiseLimits{10, 2, 1000, 2});
  const auto other = answer_key(9, get, "/o", "", std::nullopt, {});
  EXPECT_EQ(c.store_answer(9, other, answer("other")), BlockwiseCache::Stored::stored);
  std::vector<std::string> keys;
  for (int i = 0; i < 5; ++i) {
    keys.push_back(answer_key(1, get, "/a", std::to_string(i), std::nullopt, {}));
    auto r = c.store_answer(1, keys.back(), answer("xxxx"));
    EXPECT_EQ(r, i < 2 ? BlockwiseCache::Stored::stored : BlockwiseCache::Stored::stored_evicting_own) << i;
  }
  EXPECT_EQ(c.find_answer(keys[0], t0), nullptr);
  EXPECT_EQ(c.find_answer(keys[2], t0), nullptr);
  EXPECT_NE(c.find_answer(keys[3], t0), nullptr);
  EXPECT_NE(c.find_answer(keys[4], t0), nullptr);
  EXPECT_NE(c.find_answer(other, t0), nullptr);
  EXPECT_EQ(c.answers(), 3u);
  EXPECT_EQ(c.answer_bytes(), 5u + 8u);
}

TEST(BlockwiseCacheAnswers, WorkerByteBoundKeepsNothingBeyond) {
  BlockwiseCache c(BlockwiseLimits{10, 2, 10, 4});
  EXPECT_EQ(c.store_answer(1, "a", answer("12345678")), BlockwiseCache::Stored::stored);
  EXPECT_EQ(c.store_answer(2, "b", answer("123")), BlockwiseCache::Stored::worker_full);
  EXPECT_EQ(c.store_answer(2, "c", answer("12345678901")), BlockwiseCache::Stored::too_large);
  EXPECT_EQ(c.find_answer("b", t0), nullptr);
  c.drop_answer("a");
  EXPECT_EQ(c.answer_bytes(), 0u);
  EXPECT_EQ(c.store_answer(2, "b", answer("123")), BlockwiseCache::Stored::stored);
}

TEST(BlockwiseCacheUploads, PerSessionAndPerWorkerBounds) {
  BlockwiseCache c(BlockwiseLimits{3, 2, 1000, 2});
  EXPECT_EQ(c.start_reassembly(1, "a", t0 + 1s).second, BlockwiseCache::Admit::ok);
  EXPECT_EQ(c.start_reassembly(1, "b", t0 + 1s).second, BlockwiseCache::Admit::ok);
  EXPECT_EQ(c.start_reassembly(1, "c", t0 + 1s).second, BlockwiseCache::Admit::session_full);
  // Restarting an upload already held is no new slot.
  auto [again, admit] = c.start_reassembly(1, "a", t0 + 1s);
  EXPECT_EQ(admit, BlockwiseCache::Admit::ok);
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(again->body.empty());
  EXPECT_EQ(c.start_reassembly(2, "d", t0 + 1s).second, BlockwiseCache::Admit::ok);
  EXPECT_EQ(c.start_reassembly(3, "e", t0 + 1s).second, BlockwiseCache::Admit::worker_full);
  c.end_reassembly("a");
  EXPECT_EQ(c.start_reassembly(1, "c", t0 + 1s).second, BlockwiseCache::Admit::ok);
  EXPECT_EQ(c.reassemblies(), 3u);
  c.expire(t0 + 1s);
  EXPECT_EQ(c.reassemblies(), 0u);
  // The session's share is free again after expiry.
  EXPECT_EQ(c.start_reassembly(1, "x", t0 + 2s).second, BlockwiseCache::Admit::ok);
  EXPECT_EQ(c.start_reassembly(1, "y", t0 + 2s).second, BlockwiseCache::Admit::ok);
}

TEST(BlockwiseCacheSessions, DropSessionFreesItsShareOnly) {
  BlockwiseCache c(BlockwiseLimits{10, 2, 1000, 2});
  c.start_reassembly(1, "u1", t0 + 1s);
  c.start_reassembly(2, "u2", t0 + 1s);
  c.store_answer(1, "a1", answer("aaaa"));
  c.store_answer(2, "a2", answer("bb"));
  c.drop_session(1);
  EXPECT_EQ(c.find_reassembly("u1"), nullptr);
  EXPECT_NE(c.find_reassembly("u2"), nullptr);
  EXPECT_EQ(c.find_answer("a1", t0), nullptr);
  EXPECT_NE(c.find_answer("a2", t0), nullptr);
  EXPECT_EQ(c.answer_bytes(), 2u);
  EXPECT_EQ(c.start_reassembly(1, "x", t0 + 1s).second, BlockwiseCache::Admit::ok);
  EXPECT_EQ(c.start_reassembly(1, "y", t0 + 1s).second, BlockwiseCache::Admit::ok);
}

}  // namespace
}  // namespace coapgw::server
