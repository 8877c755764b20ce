// The receive path must not allocate: parse() and the view helpers that return views are counted
// against a replaced global operator new.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "bytes.hpp"
#include "coap/block.hpp"
#include "coap/message.hpp"
#include "coap/option.hpp"

// ASan owns operator new/delete and reports a replacement as alloc-dealloc mismatch, so the
// counting allocator (and the test) exist only in non-sanitized builds.
#if defined(__SANITIZE_ADDRESS__)
#define COAPGW_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COAPGW_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef COAPGW_COUNT_ALLOCATIONS
#define COAPGW_COUNT_ALLOCATIONS 1
#endif

namespace {
std::atomic<std::size_t> allocations{0};
}

#if COAPGW_COUNT_ALLOCATIONS
void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace coapgw::coap {
namespace {

TEST(CoapAllocation, ParseDoesNotAllocate) {
  if (!COAPGW_COUNT_ALLOCATIONS) GTEST_SKIP() << "allocation counting is off under ASan";
  auto d = test::cat(test::bytes({0x44, 0x02, 0x12, 0x34, 1, 2, 3, 4, 0x31, 'h', 0x87}), "sensors");
  d = test::cat(test::cat(d, test::bytes({0x14, 0x01, 0x02, 0x03, 0x04, 0xff})), "payload");
  MessageView v;
  const std::size_t before = allocations.load();
  const ParseError err = parse(d, v);
  const auto bad = first_bad_critical_option(v);
  const auto* path = v.find(option::uri_path);
  const auto block = decode_block(path->value.first(0));
  const std::size_t after = allocations.load();
  ASSERT_EQ(err, ParseError::ok);
  EXPECT_EQ(bad, std::nullopt);
  EXPECT_TRUE(block.has_value());
  EXPECT_EQ(after, before);
  // The counter works at all (so the equality above can fail).
  auto* probe = new int(1);
  EXPECT_GT(allocations.load(), after);
  delete probe;
}

}  // namespace
}  // namespace coapgw::coap
