#include "common/bytes.hpp"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

namespace coapgw::bytes {
namespace {

std::vector<std::byte> b(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int x : v) out.push_back(static_cast<std::byte>(x));
  return out;
}

TEST(Bytes, LoadsFixedWidthsMostSignificantFirst) {
  const auto d = b({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0xf8});
  EXPECT_EQ(load_be16(d.data()), 0x0102u);
  EXPECT_EQ(load_be24(d.data()), 0x010203u);
  EXPECT_EQ(load_be32(d.data()), 0x01020304u);
  EXPECT_EQ(load_be48(d.data()), 0x010203040506u);
  EXPECT_EQ(load_be64(d.data()), 0x01020304050607f8u);
  EXPECT_EQ(load_be16(d.data() + 6), 0x07f8u);  // high bit set: no sign extension
}

TEST(Bytes, LoadsFromUnsignedCharAndChar) {
  const unsigned char u[] = {0xff, 0xfe, 0x80, 0x01};
  EXPECT_EQ(load_be32(u), 0xfffe8001u);
  const char c[] = {'\xff', '\x80'};
  EXPECT_EQ(load_be16(c), 0xff80u);
}

TEST(Bytes, VariableWidthLoadCoversZeroToEightAndKeepsLowBitsBeyond) {
  const auto d = b({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09});
  EXPECT_EQ(load_be(std::span<const std::byte>(d).first(0)), 0u);
  EXPECT_EQ(load_be(std::span<const std::byte>(d).first(1)), 0x01u);
  EXPECT_EQ(load_be(std::span<const std::byte>(d).first(3)), 0x010203u);
  // Nine bytes keep the low 64 bits, as a wrapping shift would (CoAP uint options longer than 4).
  EXPECT_EQ(load_be(std::span<const std::byte>(d)), 0x0203040506070809u);
}

TEST(Bytes, StoresFixedWidthsAndRoundTrips) {
  std::array<std::byte, 8> out{};
  store_be16(out.data(), 0xabcd);
  EXPECT_EQ(out[0], std::byte{0xab});
  EXPECT_EQ(out[1], std::byte{0xcd});
  store_be24(out.data(), 0x123456);
  EXPECT_EQ(load_be24(out.data()), 0x123456u);
  store_be32(out.data(), 0xdeadbeef);
  EXPECT_EQ(load_be32(out.data()), 0xdeadbeefu);
  store_be48(out.data(), 0xffffffffffffu);
  EXPECT_EQ(load_be48(out.data()), 0xffffffffffffu);
  store_be64(out.data(), 0x8000000000000001u);
  EXPECT_EQ(out[0], std::byte{0x80});
  EXPECT_EQ(out[7], std::byte{0x01});
  EXPECT_EQ(load_be64(out.data()), 0x8000000000000001u);
}

TEST(Bytes, StoreWritesOnlyTheLowCountBytes) {
  std::array<std::byte, 4> out{std::byte{0xee}, std::byte{0xee}, std::byte{0xee}, std::byte{0xee}};
  store_be(std::span<std::byte>(out).first(2), 0x11223344);
  EXPECT_EQ(out[0], std::byte{0x33});
  EXPECT_EQ(out[1], std::byte{0x44});
  EXPECT_EQ(out[2], std::byte{0xee});  // untouched
}

TEST(Bytes, IsUsableAtCompileTime) {
  constexpr auto v = [] {
    std::array<std::byte, 3> a{};
    store_be24(a.data(), 0x0a0b0c);
    return load_be24(a.data());
  }();
  static_assert(v == 0x0a0b0c);
  static_assert(min_be_size(0) == 0 && min_be_size(0xff) == 1 && min_be_size(0x100) == 2);
  static_assert(hex_value('f') == 15 && hex_value('F') == 15 && hex_value('g') == -1);
  SUCCEED();
}

TEST(Bytes, AppendGrowsAnyByteContainer) {
  std::vector<std::byte> v = b({0x99});
  append_be(v, 0x0102, 2);
  append_be(v, 0x030405060708u, 6);
  EXPECT_EQ(v, b({0x99, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}));
  std::vector<unsigned char> u;
  append_be(u, 0xfeedfacecafebeefu, 8);
  EXPECT_EQ(u, (std::vector<unsigned char>{0xfe, 0xed, 0xfa, 0xce, 0xca, 0xfe, 0xbe, 0xef}));
  append_be(u, 7, 0);
  EXPECT_EQ(u.size(), 8u);
}

TEST(Bytes, MinimalSizeIsTheCoapUintLength) {
  EXPECT_EQ(min_be_size(0), 0u);
  EXPECT_EQ(min_be_size(1), 1u);
  EXPECT_EQ(min_be_size(0xffff), 2u);
  EXPECT_EQ(min_be_size(0x10000), 3u);
  EXPECT_EQ(min_be_size(0xffffffffu), 4u);
  EXPECT_EQ(min_be_size(~std::uint64_t{0}), 8u);
}

TEST(Hex, EncodesLowerCaseWithoutSeparators) {
  EXPECT_EQ(hex_encode(std::span<const std::byte>()), "");
  const auto d = b({0x00, 0x0f, 0xa0, 0xff});
  EXPECT_EQ(hex_encode(std::span<const std::byte>(d)), "000fa0ff");
  EXPECT_EQ(hex_encode(std::string_view("\x01Z", 2)), "015a");
  std::string out = "x=";
  const unsigned char c = 0x7f;
  append_hex(out, std::span<const unsigned char>(&c, 1));
  EXPECT_EQ(out, "x=7f");
}

TEST(Hex, DecodesEitherCaseAndRoundTrips) {
  std::vector<std::byte> out;
  ASSERT_TRUE(append_unhex(out, "00aBFf10"));
  EXPECT_EQ(out, b({0x00, 0xab, 0xff, 0x10}));
  EXPECT_EQ(hex_encode(std::span<const std::byte>(out)), "00abff10");
  std::string s;
  ASSERT_TRUE(append_unhex(s, ""));
  EXPECT_TRUE(s.empty());
}

TEST(Hex, RefusesOddLengthSeparatorsAndNonHex) {
  std::vector<std::byte> out;
  EXPECT_FALSE(append_unhex(out, "abc"));
  EXPECT_FALSE(append_unhex(out, "ab:cd"));
  EXPECT_FALSE(append_unhex(out, "0g"));
  EXPECT_FALSE(append_unhex(out, " 0"));
  EXPECT_FALSE(append_unhex(out, "0x12"));
}

TEST(Hex, LowerOnlyRefusesUpperCase) {
  std::vector<std::byte> out;
  EXPECT_TRUE(append_unhex(out, "ab09", HexCase::lower_only));
  out.clear();
  EXPECT_FALSE(append_unhex(out, "aB09", HexCase::lower_only));
  EXPECT_FALSE(append_unhex(out, "AB", HexCase::lower_only));
}

}  // namespace
}  // namespace coapgw::bytes
