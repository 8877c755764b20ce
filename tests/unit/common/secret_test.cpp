// Keys are wiped whenever their storage is let go: destruction, reallocation, move.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/secret.hpp"

namespace coapgw {
namespace {

// Upstream allocator that records, at the moment each block is freed, whether it was all zero.
struct FreedBlocks {
  static inline std::vector<bool> all_zero;
};
template <class T>
struct RecordingAllocator {
  using value_type = T;
  RecordingAllocator() = default;
  template <class U>
  RecordingAllocator(const RecordingAllocator<U>&) {}
  T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, std::size_t n) {
    auto* b = reinterpret_cast<const unsigned char*>(p);
    FreedBlocks::all_zero.push_back(std::all_of(b, b + n * sizeof(T), [](unsigned char c) { return c == 0; }));
    std::allocator<T>().deallocate(p, n);
  }
};
using Probe = std::vector<char, WipingAllocator<char, RecordingAllocator<char>>>;

Probe probe(std::string_view text) { return Probe(text.begin(), text.end()); }

TEST(Secret, WipedOnDestruction) {
  FreedBlocks::all_zero.clear();
  { auto key = probe("0123456789abcdef-secret"); }
  ASSERT_EQ(FreedBlocks::all_zero.size(), 1u);
  EXPECT_TRUE(FreedBlocks::all_zero[0]);
}

TEST(Secret, OldBufferWipedWhenGrowing) {
  FreedBlocks::all_zero.clear();
  auto key = probe("short");
  key.shrink_to_fit();
  for (char c : std::string("-and-much-longer-than-before")) key.push_back(c);
  ASSERT_GE(FreedBlocks::all_zero.size(), 1u);
  for (bool z : FreedBlocks::all_zero) EXPECT_TRUE(z);
}

TEST(Secret, MoveLeavesNoCopyBehind) {
  SecretString a("k3y");  // short: lives in the small-string buffer, which a move copies
  const char* inline_buf = a.data();
  const auto cap = a.capacity();
  SecretString b(std::move(a));
  EXPECT_EQ(b, "k3y");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  for (std::size_t i = 0; i < cap; ++i) EXPECT_EQ(inline_buf[i], '\0') << i;
  SecretString c("another key");
  c = std::move(b);
  EXPECT_EQ(c, "k3y");
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  for (std::size_t i = 0; i < b.capacity(); ++i) EXPECT_EQ(b.data()[i], '\0') << i;
}

TEST(Secret, AssignmentWipesTheOldValueFirst) {
  SecretString k("a first key of some length, on the heap");
  const char* buf = k.data();
  const auto cap = k.capacity();
  k = "short";  // fits: std::string reuses the buffer, whose tail must not keep the old key
  ASSERT_EQ(k.data(), buf);
  EXPECT_EQ(k, "short");
  for (std::size_t i = k.size(); i < cap; ++i) EXPECT_EQ(buf[i], '\0') << i;
  k = k.view().substr(1);  // aliasing assignment stays correct
  EXPECT_EQ(k, "hort");
}

TEST(Secret, TakingAStringWipesIt) {
  std::string text = "abc";
  const char* buf = text.data();
  SecretString k(std::move(text));
  EXPECT_EQ(k, "abc");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(buf[i], '\0') << i;
}

TEST(Secret, SecureWipeClearsVectorsAndStrings) {
  std::vector<unsigned char> v{1, 2, 3, 4};
  auto* p = v.data();
  secure_wipe(v);
  EXPECT_TRUE(v.empty());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(p[i], 0);
}

TEST(Secret, ComparesAndViewsLikeAString) {
  SecretString k("abc");
  EXPECT_EQ(k.view(), "abc");
  EXPECT_TRUE(k == std::string("abc"));
  EXPECT_FALSE(k == "abd");
  EXPECT_EQ(k.size(), 3u);
  EXPECT_EQ(SecretString(), "");
  const std::string& plain = k;  // usable wherever a std::string is expected
  EXPECT_EQ(plain, "abc");
}

}  // namespace
}  // namespace coapgw
