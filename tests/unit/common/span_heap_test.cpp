// coapgw::SpanHeap: size classes, span reuse, pages given back by trim(), C-library fallback.
#include "common/span_heap.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace coapgw {
namespace {

constexpr std::size_t reserve = 64 * SpanHeap::span_size;

TEST(SpanHeap, ObjectsAreAlignedDistinctAndKeepTheirBytes) {
  SpanHeap heap(reserve);
  ASSERT_TRUE(heap.ok());
  std::vector<void*> blocks;
  for (std::size_t size : {1, 15, 16, 17, 100, 129, 1000, 4097, 16700, 65536}) {
    void* p = heap.allocate(size);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(heap.owns(p));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u);
    std::memset(p, static_cast<int>(size & 0xff), size);
    blocks.push_back(p);
  }
  const std::size_t sizes[] = {1, 15, 16, 17, 100, 129, 1000, 4097, 16700, 65536};
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    auto* bytes = static_cast<unsigned char*>(blocks[i]);
    EXPECT_EQ(bytes[0], sizes[i] & 0xff);
    EXPECT_EQ(bytes[sizes[i] - 1], sizes[i] & 0xff) << sizes[i];
  }
  EXPECT_GT(heap.stats().live_bytes, 0u);
  for (void* p : blocks) heap.release(p);
  EXPECT_EQ(heap.stats().live_bytes, 0u);
  EXPECT_EQ(heap.stats().spans_in_use, 0u);
}

TEST(SpanHeap, AnEmptiedSpanIsFreeAndTrimGivesItBack) {
  SpanHeap heap(reserve);
  std::vector<void*> blocks;
  for (int i = 0; i < 200; ++i) blocks.push_back(heap.allocate(2000));  // several spans of one class
  const auto busy = heap.stats();
  EXPECT_GE(busy.spans_in_use, 2u);
  EXPECT_EQ(busy.spans_free, 0u);
  // One object kept: its span stays; every other span empties.
  for (std::size_t i = 1; i < blocks.size(); ++i) heap.release(blocks[i]);
  const auto after = heap.stats();
  EXPECT_EQ(after.spans_in_use, 1u);
  EXPECT_EQ(after.spans_free, busy.spans_in_use - 1);
  EXPECT_EQ(heap.trim(), after.spans_free * SpanHeap::span_size);
  EXPECT_EQ(heap.stats().spans_returned, after.spans_free);
  EXPECT_EQ(heap.trim(), 0u);  // nothing new to give back
  // A returned span serves again (zero pages on first touch), and leaves the returned count.
  std::vector<void*> again;
  for (int i = 0; i < 200; ++i) again.push_back(heap.allocate(3000));
  for (void* p : again) std::memset(p, 0x5a, 3000);
  EXPECT_LT(heap.stats().spans_returned, after.spans_free);
  for (void* p : again) heap.release(p);
  heap.release(blocks[0]);
  EXPECT_EQ(heap.stats().spans_in_use, 0u);
  EXPECT_EQ(heap.stats().live_bytes, 0u);
}

TEST(SpanHeap, ReallocateKeepsContentsAcrossClasses) {
  SpanHeap heap(reserve);
  auto* p = static_cast<char*>(heap.allocate(10));
  std::memcpy(p, "coapgw-123", 10);
  auto* same = static_cast<char*>(heap.reallocate(p, 12));  // same 16-byte class
  EXPECT_EQ(same, p);
  auto* grown = static_cast<char*>(heap.reallocate(same, 5000));
  ASSERT_NE(grown, nullptr);
  EXPECT_EQ(std::memcmp(grown, "coapgw-123", 10), 0);
  auto* huge = static_cast<char*>(heap.reallocate(grown, SpanHeap::max_small + 1));  // to the C library
  ASSERT_NE(huge, nullptr);
  EXPECT_FALSE(heap.owns(huge));
  EXPECT_EQ(std::memcmp(huge, "coapgw-123", 10), 0);
  EXPECT_EQ(heap.stats().live_bytes, 0u);
  EXPECT_EQ(heap.reallocate(huge, 0), nullptr);  // released
  void* fresh = heap.reallocate(nullptr, 24);  // nullptr: a plain allocation
  EXPECT_TRUE(heap.owns(fresh));
  heap.release(fresh);
}

TEST(SpanHeap, FallsBackToTheCLibraryWhenTheRangeIsFull) {
  SpanHeap heap(2 * SpanHeap::span_size);  // two spans only
  std::vector<void*> blocks;
  for (int i = 0; i < 3; ++i) blocks.push_back(heap.allocate(60000));  // three per span
  for (int i = 0; i < 3; ++i) blocks.push_back(heap.allocate(60000));
  void* extra = heap.allocate(60000);  // both spans full
  ASSERT_NE(extra, nullptr);
  EXPECT_FALSE(heap.owns(extra));
  EXPECT_EQ(heap.stats().fallback_allocations, 1u);
  heap.release(extra);  // goes back to the C library
  for (void* p : blocks) heap.release(p);
  EXPECT_EQ(heap.stats().spans_free, 2u);
}

}  // namespace
}  // namespace coapgw
