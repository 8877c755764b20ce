// coapgw::SpanHeap — size-class spans in one reserved range (see span_heap.hpp).
#include "common/span_heap.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace coapgw {

// At the start of every span in use. Objects follow, aligned to 16 bytes.
struct SpanHeap::Span {
  std::uint32_t size_class;
  std::uint32_t used;        // objects handed out
  std::uint32_t capacity;    // objects the span holds
  std::uint32_t carved;      // objects never handed out start at this index
  void* free_list;           // released objects, linked through their first word
  Span* prev;                // partial list of its class
  Span* next;
  bool in_partial;
};

namespace {
constexpr std::size_t header_size = (sizeof(void*) * 3 + 16 + 15) / 16 * 16 + 16;
constexpr std::size_t alignment = 16;
}  // namespace

SpanHeap::SpanHeap(std::size_t reserve) {
  static_assert(header_size >= sizeof(Span));
  // Size classes: 16 B steps up to 128 B, then four per doubling up to max_small.
  for (std::size_t s = alignment; s <= 128; s += alignment) class_sizes_.push_back(s);
  for (std::size_t base = 128; base < max_small; base *= 2) {
    for (std::size_t q = 1; q <= 4; ++q) class_sizes_.push_back(base + base / 4 * q);
  }
  partial_.assign(class_sizes_.size(), nullptr);
  span_count_ = reserve / span_size;
  if (span_count_ == 0) return;
  // Over-reserve one span so the range can start on a span boundary (free() finds a span by masking).
  const std::size_t length = (span_count_ + 1) * span_size;
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    span_count_ = 0;
    return;
  }
  const auto raw = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t aligned = (raw + span_size - 1) & ~(static_cast<std::uintptr_t>(span_size) - 1);
  if (aligned != raw) ::munmap(p, aligned - raw);
  const std::size_t tail = raw + length - (aligned + span_count_ * span_size);
  if (tail != 0) ::munmap(reinterpret_cast<void*>(aligned + span_count_ * span_size), tail);
  base_ = reinterpret_cast<std::byte*>(aligned);
  free_spans_.reserve(std::min<std::size_t>(span_count_, 1 << 16));
  span_returned_.assign(span_count_, false);
}

SpanHeap::~SpanHeap() {
  if (base_ != nullptr) ::munmap(base_, span_count_ * span_size);
}

bool SpanHeap::owns(const void* p) const {
  const auto* b = static_cast<const std::byte*>(p);
  return base_ != nullptr && b >= base_ && b < base_ + span_count_ * span_size;
}

std::size_t SpanHeap::class_of(std::size_t size) const {
  const auto it = std::lower_bound(class_sizes_.begin(), class_sizes_.end(), std::max<std::size_t>(size, 1));
  return static_cast<std::size_t>(it - class_sizes_.begin());
}

SpanHeap::Span* SpanHeap::take_span(std::size_t size_class) {
  std::size_t index = 0;
  if (!free_spans_.empty()) {
    index = free_spans_.back();
    free_spans_.pop_back();
    --stats_.spans_free;
    if (span_returned_[index]) {
      span_returned_[index] = false;
      --stats_.spans_returned;
    }
  } else if (next_fresh_ < span_count_) {
    index = next_fresh_++;
  } else {
    return nullptr;
  }
  auto* span = reinterpret_cast<Span*>(base_ + index * span_size);
  span->size_class = static_cast<std::uint32_t>(size_class);
  span->used = 0;
  span->capacity = static_cast<std::uint32_t>((span_size - header_size) / class_sizes_[size_class]);
  span->carved = 0;
  span->free_list = nullptr;
  span->prev = nullptr;
  span->next = partial_[size_class];
  if (span->next != nullptr) span->next->prev = span;
  span->in_partial = true;
  partial_[size_class] = span;
  ++stats_.spans_in_use;
  return span;
}

void SpanHeap::unlink_partial(Span* span) {
  if (span->prev != nullptr) span->prev->next = span->next;
  else partial_[span->size_class] = span->next;
  if (span->next != nullptr) span->next->prev = span->prev;
  span->prev = span->next = nullptr;
  span->in_partial = false;
}

void* SpanHeap::allocate(std::size_t size) {
  if (base_ == nullptr || size > max_small) {
    std::lock_guard lock(mutex_);
    ++stats_.fallback_allocations;
    return std::malloc(size);
  }
  const std::size_t c = class_of(size);
  std::lock_guard lock(mutex_);
  Span* span = partial_[c];
  if (span == nullptr) span = take_span(c);
  if (span == nullptr) {
    ++stats_.fallback_allocations;
    return std::malloc(size);
  }
  void* object;
  if (span->free_list != nullptr) {
    object = span->free_list;
    std::memcpy(&span->free_list, object, sizeof(void*));
  } else {
    object = reinterpret_cast<std::byte*>(span) + header_size + span->carved * class_sizes_[c];
    ++span->carved;
  }
  if (++span->used == span->capacity) unlink_partial(span);
  stats_.live_bytes += class_sizes_[c];
  return object;
}

void SpanHeap::release(void* p) {
  if (p == nullptr) return;
  if (!owns(p)) {
    std::free(p);
    return;
  }
  std::lock_guard lock(mutex_);
  const auto offset = static_cast<std::size_t>(static_cast<std::byte*>(p) - base_);
  const std::size_t index = offset / span_size;
  auto* span = reinterpret_cast<Span*>(base_ + index * span_size);
  std::memcpy(p, &span->free_list, sizeof(void*));
  span->free_list = p;
  stats_.live_bytes -= class_sizes_[span->size_class];
  if (span->used-- == span->capacity) {  // was full: has room again
    span->next = partial_[span->size_class];
    if (span->next != nullptr) span->next->prev = span;
    span->prev = nullptr;
    span->in_partial = true;
    partial_[span->size_class] = span;
  }
  if (span->used == 0) {
    unlink_partial(span);
    --stats_.spans_in_use;
    ++stats_.spans_free;
    free_spans_.push_back(static_cast<std::uint32_t>(index));
  }
}

std::size_t SpanHeap::slot_size(const void* p) const {
  const auto offset = static_cast<std::size_t>(static_cast<const std::byte*>(p) - base_);
  const auto* span = reinterpret_cast<const Span*>(base_ + offset / span_size * span_size);
  return class_sizes_[span->size_class];
}

void* SpanHeap::reallocate(void* p, std::size_t size) {
  if (p == nullptr) return allocate(size);
  if (size == 0) {
    release(p);
    return nullptr;
  }
  if (!owns(p)) return std::realloc(p, size);  // stays with the C library
  std::size_t old_size;
  {
    std::lock_guard lock(mutex_);
    old_size = slot_size(p);
  }
  if (size <= old_size && size > old_size / 2) return p;
  void* moved = allocate(size);
  if (moved == nullptr) return nullptr;
  std::memcpy(moved, p, std::min(old_size, size));
  release(p);
  return moved;
}

std::size_t SpanHeap::trim() {
  std::lock_guard lock(mutex_);
  std::size_t returned = 0;
  for (const auto index : free_spans_) {
    if (span_returned_[index]) continue;
    ::madvise(base_ + index * span_size, span_size, MADV_DONTNEED);
    span_returned_[index] = true;
    ++stats_.spans_returned;
    returned += span_size;
  }
  return returned;
}

SpanHeap::Stats SpanHeap::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace coapgw
