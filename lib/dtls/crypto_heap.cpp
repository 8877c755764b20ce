// coapgw::dtls crypto heap — CRYPTO_set_mem_functions onto a SpanHeap (see crypto_heap.hpp).
#include "dtls/crypto_heap.hpp"

#include <openssl/crypto.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COAPGW_CRYPTO_HEAP_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define COAPGW_CRYPTO_HEAP_OFF 1
#endif
#endif

namespace coapgw::dtls {
namespace {

// One SpanHeap per thread that allocates (workers take turns over the shards), so handshakes on
// different workers never wait for one another's lock; a block freed by another thread goes back
// to the shard that owns its address.
constexpr std::size_t shard_count = 16;
[[maybe_unused]] constexpr std::size_t shard_reserve = crypto_heap_reserve / shard_count;

// Set once before any OpenSSL allocation, never freed (OpenSSL frees late, after main returns).
SpanHeap* shards[shard_count] = {};
bool installed = false;
std::atomic<unsigned> next_shard{0};
thread_local SpanHeap* own_shard = nullptr;

[[maybe_unused]] SpanHeap& own() {
  if (own_shard == nullptr) own_shard = shards[next_shard.fetch_add(1, std::memory_order_relaxed) % shard_count];
  return *own_shard;
}

[[maybe_unused]] SpanHeap* owner(const void* p) {
  for (auto* shard : shards) {
    if (shard->owns(p)) return shard;
  }
  return nullptr;
}

[[maybe_unused]] void* heap_malloc(std::size_t size, const char*, int) { return own().allocate(size); }

[[maybe_unused]] void* heap_realloc(void* p, std::size_t size, const char*, int) {
  if (p == nullptr) return own().allocate(size);
  if (auto* shard = owner(p)) return shard->reallocate(p, size);
  if (size == 0) {
    std::free(p);
    return nullptr;
  }
  return std::realloc(p, size);  // a block the C library gave (too large, or a shard was full)
}

[[maybe_unused]] void heap_free(void* p, const char*, int) {
  if (p == nullptr) return;
  if (auto* shard = owner(p)) shard->release(p);
  else std::free(p);
}

}  // namespace

bool install_crypto_heap() {
#ifdef COAPGW_CRYPTO_HEAP_OFF
  return false;
#else
  if (installed) return true;
  if (const char* env = std::getenv("COAPGW_CRYPTO_HEAP"); env != nullptr && std::strcmp(env, "0") == 0) return false;
  auto give_up = [] {
    for (auto*& shard : shards) {
      delete shard;  // unmaps its range
      shard = nullptr;
    }
    return false;
  };
  for (auto*& shard : shards) {
    shard = new SpanHeap(shard_reserve);
    if (!shard->ok()) return give_up();  // e.g. strict overcommit: OpenSSL keeps the C library
  }
  if (CRYPTO_set_mem_functions(heap_malloc, heap_realloc, heap_free) != 1) return give_up();  // OpenSSL allocated already
  installed = true;
  return true;
#endif
}

std::size_t trim_crypto_heap() {
  std::size_t returned = 0;
  if (installed) {
    for (auto* shard : shards) returned += shard->trim();
  }
  return returned;
}

std::optional<SpanHeap::Stats> crypto_heap_stats() {
  if (!installed) return std::nullopt;
  SpanHeap::Stats total;
  for (auto* shard : shards) {
    const auto s = shard->stats();
    total.live_bytes += s.live_bytes;
    total.spans_in_use += s.spans_in_use;
    total.spans_free += s.spans_free;
    total.spans_returned += s.spans_returned;
    total.fallback_allocations += s.fallback_allocations;
  }
  return total;
}

}  // namespace coapgw::dtls
