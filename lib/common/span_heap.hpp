// coapgw::SpanHeap — a heap of its own, in one reserved address range, for memory that comes and
// goes in bursts (OpenSSL's handshake state, see dtls/crypto_heap.hpp), so that it never shares a
// page with the long-lived objects on the C library's heap.
//
// Why: a DTLS handshake allocates and frees tens of KB (the SSL object, its record buffers, the
// handshake hash) while established sessions allocate their small, long-lived objects on the same
// glibc arenas; after a storm of arrivals each page still holding one session object stays resident
// and malloc_trim cannot return it (issue 17, item 2). Here, spans of `span_size` bytes each serve
// one size class; a span whose last object is freed goes back to a free list and trim() returns its
// pages to the system (madvise DONTNEED); nothing else lives in it.
//
// Owns: the reserved range (`reserve` bytes, MAP_NORESERVE: untouched pages cost nothing), the size
// classes (16 B .. max_small, four per doubling), the spans and their free lists. Requests above
// max_small, and any once the range is used up, go to the C library (release() tells by address).
// Thread-safe (one mutex: OpenSSL allocates from every worker thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace coapgw {

class SpanHeap {
 public:
  static constexpr std::size_t span_size = 256 * 1024;
  static constexpr std::size_t max_small = 64 * 1024;

  struct Stats {
    std::size_t live_bytes = 0;       // size-class bytes handed out and not yet released
    std::size_t spans_in_use = 0;     // spans holding at least one object
    std::size_t spans_free = 0;       // empty spans on the free list (resident until trim())
    std::size_t spans_returned = 0;   // of those, already given back by trim()
    std::size_t fallback_allocations = 0;  // served by the C library (too large, or range full)
  };

  // Reserves `reserve` bytes of address space (rounded to spans). ok() is false when that failed;
  // then every call goes to the C library.
  explicit SpanHeap(std::size_t reserve);
  ~SpanHeap();
  SpanHeap(const SpanHeap&) = delete;
  SpanHeap& operator=(const SpanHeap&) = delete;

  bool ok() const { return base_ != nullptr; }
  void* allocate(std::size_t size);
  void* reallocate(void* p, std::size_t size);  // size 0: released, returns nullptr
  void release(void* p);                         // nullptr and C-library pointers accepted
  bool owns(const void* p) const;
  // Gives the pages of every empty span back to the system; returns the bytes given back.
  std::size_t trim();
  Stats stats() const;

 private:
  struct Span;
  std::size_t class_of(std::size_t size) const;
  Span* take_span(std::size_t size_class);
  void unlink_partial(Span* span);
  std::size_t slot_size(const void* p) const;

  std::byte* base_ = nullptr;
  std::size_t span_count_ = 0;  // spans the range holds
  std::size_t next_fresh_ = 0;  // spans below this were used at least once
  std::vector<std::size_t> class_sizes_;
  std::vector<Span*> partial_;            // per class: spans with room, doubly linked
  std::vector<std::uint32_t> free_spans_;  // empty spans, most recently freed last
  std::vector<bool> span_returned_;        // free span already madvised (trim)
  mutable std::mutex mutex_;
  Stats stats_;
};

}  // namespace coapgw
