// The client role's block-wise transfers (RFC 7959): Block1 sending and Block2 fetching, bounded.
#include <gtest/gtest.h>

#include "fake_peer.hpp"

namespace coapgw::exchange {
namespace {

using namespace test;

struct Blocks : Fixture {
  explicit Blocks(std::size_t block_size = 64, std::size_t max_body = 1 << 20)
      : Fixture(settings_for(block_size, max_body), session::Type::client) {}
  static LayerSettings settings_for(std::size_t block_size, std::size_t max_body) {
    LayerSettings s;
    s.client.block_size = block_size;
    s.client.max_body_bytes = max_body;
    return s;
  }
  std::vector<Result> results;
  void start(Request r) {
    ASSERT_TRUE(layer.client().start(*s, std::move(r), [this](Result x) { results.push_back(std::move(x)); }, now, false));
  }
  // A piggybacked answer to the last request, with Block1/Block2 as given.
  void answer(std::uint8_t code, std::optional<coap::BlockValue> b1, std::optional<coap::BlockValue> b2,
              std::string_view payload = {}, std::optional<std::string_view> etag = std::nullopt) {
    const auto& req = peer.sent.back();
    auto m = message(coap::Type::ack, code, req.message_id, req.token, payload);
    if (b1) add_block(m, coap::option::block1, *b1);
    if (b2) add_block(m, coap::option::block2, *b2);
    if (etag) m.add_string_option(coap::option::etag, *etag);
    deliver(layer, *s, m, now);
  }
};

TEST(BlockwiseClient, Block1SendsEveryBlockAndFollowsASmallerSize) {
  Blocks b(64);
  Request r;
  r.code = coap::code::post;
  r.payload.assign(200, std::byte{'x'});
  b.start(r);
  auto first = b.peer.sent.back();
  auto b1 = block_of(first, coap::option::block1);
  ASSERT_TRUE(b1);
  EXPECT_EQ(*b1, (coap::BlockValue{0, true, 2}));  // 64-byte blocks
  ASSERT_TRUE(first.find(coap::option::size1));
  EXPECT_EQ(coap::decode_uint(first.find(coap::option::size1)->value), 200u);
  EXPECT_EQ(first.payload.size(), 64u);
  // The server wants 32-byte blocks: the next block starts at byte 64, block 2 of size 32.
  b.answer(coap::code::continue_, coap::BlockValue{0, true, 1}, std::nullopt);
  auto second = b.peer.sent.back();
  EXPECT_EQ(block_of(second, coap::option::block1), (coap::BlockValue{2, true, 1}));
  EXPECT_FALSE(second.find(coap::option::size1));
  EXPECT_EQ(second.token, first.token);
  EXPECT_NE(second.message_id, first.message_id);
  for (std::uint32_t n = 3; n <= 6; ++n) {
    b.answer(coap::code::continue_, coap::BlockValue{n - 1, true, 1}, std::nullopt);
    EXPECT_EQ(block_of(b.peer.sent.back(), coap::option::block1), (coap::BlockValue{n, n < 6, 1}));
  }
  EXPECT_EQ(b.peer.sent.back().payload.size(), 8u);  // 200 = 64 + 4 * 32 + 8
  EXPECT_TRUE(b.results.empty());
  b.answer(coap::code::changed, coap::BlockValue{6, false, 1}, std::nullopt, "done");
  ASSERT_EQ(b.results.size(), 1u);
  EXPECT_EQ(b.results[0].response.code, coap::code::changed);
  EXPECT_EQ(b.peer.sent.size(), 6u);
}

TEST(BlockwiseClient, Block2AnswerIsFetchedWhole) {
  Blocks b(64);
  b.start(Request{});
  b.answer(coap::code::content, std::nullopt, coap::BlockValue{0, true, 1}, std::string(32, 'a'), "v1");
  EXPECT_EQ(block_of(b.peer.sent.back(), coap::option::block2), (coap::BlockValue{1, false, 1}));
  b.answer(coap::code::content, std::nullopt, coap::BlockValue{1, true, 1}, std::string(32, 'b'), "v1");
  EXPECT_EQ(block_of(b.peer.sent.back(), coap::option::block2), (coap::BlockValue{2, false, 1}));
  EXPECT_TRUE(b.results.empty());
  b.answer(coap::code::content, std::nullopt, coap::BlockValue{2, false, 1}, "end", "v1");
  ASSERT_EQ(b.results.size(), 1u);
  ASSERT_FALSE(b.results[0].failure);
  EXPECT_EQ(coap::as_string(b.results[0].response.payload), std::string(32, 'a') + std::string(32, 'b') + "end");
  ASSERT_TRUE(b.results[0].response.find(coap::option::etag));
  EXPECT_EQ(b.peer.sent.size(), 3u);
}

TEST(BlockwiseClient, Block2RestartsWhenTheRepresentationChangesThenGivesUp) {
  Blocks b(64);
  b.start(Request{});
  b.answer(coap::code::content, std::nullopt, coap::BlockValue{0, true, 1}, std::string(32, 'a'), "v1");
  for (unsigned i = 0; i < max_block2_restarts; ++i) {
    // Block 1 arrives with a new ETag: the fetch starts again from block 0.
    b.answer(coap::code::content, std::nullopt, coap::BlockValue{1, true, 1}, std::string(32, 'b'),
             i % 2 ? "v1" : "v2");
    EXPECT_EQ(block_of(b.peer.sent.back(), coap::option::block2)->num, 0u);
    b.answer(coap::code::content, std::nullopt, coap::BlockValue{0, true, 1}, std::string(32, 'a'),
             i % 2 ? "v1" : "v2");
  }
  EXPECT_TRUE(b.results.empty());
  b.answer(coap::code::content, std::nullopt, coap::BlockValue{1, true, 1}, std::string(32, 'b'), "v9");
  ASSERT_EQ(b.results.size(), 1u);
  EXPECT_EQ(b.results[0].failure, Failure::bad_response);
}

TEST(BlockwiseClient, Block2BeyondTheBoundIsBadResponse) {
  Blocks b(64, 100);
  b.start(Request{});
  b.answer(coap::code::content, std::nullopt, coap::BlockValue{0, true, 2}, std::string(64, 'a'));
  EXPECT_TRUE(b.results.empty());
  b.answer(coap::code::content, std::nullopt, coap::BlockValue{1, true, 2}, std::string(64, 'b'));
  ASSERT_EQ(b.results.size(), 1u);
  EXPECT_EQ(b.results[0].failure, Failure::bad_response);
  EXPECT_EQ(b.layer.client().size(), 0u);
}

TEST(BlockwiseClient, OutOfOrderBlockIsBadResponse) {
  Blocks b(64);
  b.start(Request{});
  b.answer(coap::code::content, std::nullopt, coap::BlockValue{0, true, 2}, std::string(64, 'a'));
  b.answer(coap::code::content, std::nullopt, coap::BlockValue{2, true, 2}, std::string(64, 'c'));
  ASSERT_EQ(b.results.size(), 1u);
  EXPECT_EQ(b.results[0].failure, Failure::bad_response);
}

}  // namespace
}  // namespace coapgw::exchange
