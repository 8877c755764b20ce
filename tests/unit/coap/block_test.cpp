// Block option values (RFC 7959 §2.2 and the examples of §3).
#include <gtest/gtest.h>

#include "bytes.hpp"
#include "coap/block.hpp"

namespace coapgw::coap {
namespace {

using test::bytes;

std::vector<std::byte> encoded(BlockValue b) {
  std::array<std::byte, 3> out{};
  const std::size_t n = encode_block(b, out);
  return {out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)};
}

TEST(Block, Rfc7959Figure2Examples) {
  // "2:0/1/128", "2:1/1/128", "2:2/0/128": num/more/size.
  EXPECT_EQ(encoded({0, true, 3}), bytes({0x0b}));
  EXPECT_EQ(encoded({1, true, 3}), bytes({0x1b}));
  EXPECT_EQ(encoded({2, false, 3}), bytes({0x23}));
  // "1:0/1/128" for a Block1 PUT, "1:2/0/128" last block.
  const auto first = decode_block(bytes({0x0b}));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->num, 0u);
  EXPECT_TRUE(first->more);
  EXPECT_EQ(first->size(), 128u);
  const auto last = decode_block(bytes({0x23}));
  ASSERT_TRUE(last);
  EXPECT_EQ(*last, (BlockValue{2, false, 3}));
}

TEST(Block, Rfc7959Figure6LateNegotiation) {
  // Client asks for 2:0/0/64, the server answers 2:0/1/64, later 2:4/1/64 ...
  EXPECT_EQ(encoded({0, false, 2}), bytes({0x02}));
  EXPECT_EQ(encoded({4, true, 2}), bytes({0x4a}));
  EXPECT_EQ(decode_block(bytes({0x4a})), (BlockValue{4, true, 2}));
}

TEST(Block, MinimalLength) {
  EXPECT_EQ(encoded({0, false, 0}), bytes({}));  // all zero -> empty value
  EXPECT_EQ(encoded({15, true, 6}), bytes({0xfe}));
  EXPECT_EQ(encoded({16, false, 0}), bytes({0x01, 0x00}));
  EXPECT_EQ(encoded({4095, true, 6}), bytes({0xff, 0xfe}));
  EXPECT_EQ(encoded({4096, false, 6}), bytes({0x01, 0x00, 0x06}));
  EXPECT_EQ(encoded({max_block_num, true, 6}), bytes({0xff, 0xff, 0xfe}));
}

TEST(Block, RoundTrip) {
  for (std::uint32_t num : {0u, 1u, 15u, 16u, 4095u, 4096u, max_block_num})
    for (bool more : {false, true})
      for (std::uint8_t szx = 0; szx <= 6; ++szx) {
        const BlockValue b{num, more, szx};
        EXPECT_EQ(decode_block(encoded(b)), b) << num << " " << more << " " << int{szx};
      }
}

TEST(Block, RejectsBadValues) {
  EXPECT_FALSE(decode_block(bytes({0x07})));                // szx 7 is reserved (BERT)
  EXPECT_FALSE(decode_block(bytes({0x01, 0x00, 0x0f})));
  EXPECT_FALSE(decode_block(bytes({0, 0, 0, 1})));          // more than 3 bytes
  const auto empty = decode_block({});
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, (BlockValue{0, false, 0}));
  std::array<std::byte, 3> out{};
  EXPECT_EQ(encode_block({max_block_num + 1, false, 0}, out), 0u);
  EXPECT_EQ(encode_block({1, false, 7}, out), 0u);
  EXPECT_FALSE(is_encodable({1, false, 7}));
}

TEST(Block, SzxForSize) {
  EXPECT_EQ(szx_for_size(0), 0);
  EXPECT_EQ(szx_for_size(16), 0);
  EXPECT_EQ(szx_for_size(31), 0);
  EXPECT_EQ(szx_for_size(32), 1);
  EXPECT_EQ(szx_for_size(1023), 5);
  EXPECT_EQ(szx_for_size(1024), 6);
  EXPECT_EQ(szx_for_size(1152), 6);
  EXPECT_EQ(szx_for_size(1u << 20), 6);
  EXPECT_EQ(BlockValue{}.size(), 1024u);
}

}  // namespace
}  // namespace coapgw::coap
