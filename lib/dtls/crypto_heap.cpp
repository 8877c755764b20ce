// coapgw::dtls crypto heap — CRYPTO_set_mem_functions onto a SpanHeap (see crypto_heap.hpp).
#include "dtls/crypto_heap.hpp"

#include <openssl/crypto.h>

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

SpanHeap* heap = nullptr;  // set once before any OpenSSL allocation, never freed (OpenSSL frees late)

void* heap_malloc(std::size_t size, const char*, int) { return heap->allocate(size); }
void* heap_realloc(void* p, std::size_t size, const char*, int) { return heap->reallocate(p, size); }
void heap_free(void* p, const char*, int) { heap->release(p); }

}  // namespace

bool install_crypto_heap() {
#ifdef COAPGW_CRYPTO_HEAP_OFF
  return false;
#else
  if (heap != nullptr) return true;
  if (const char* env = std::getenv("COAPGW_CRYPTO_HEAP"); env != nullptr && std::strcmp(env, "0") == 0) return false;
  auto* candidate = new SpanHeap(crypto_heap_reserve);
  if (!candidate->ok()) {
    delete candidate;
    return false;
  }
  heap = candidate;
  if (CRYPTO_set_mem_functions(heap_malloc, heap_realloc, heap_free) != 1) {
    heap = nullptr;  // OpenSSL allocated already: it keeps the C library
    delete candidate;
    return false;
  }
  return true;
#endif
}

std::size_t trim_crypto_heap() { return heap != nullptr ? heap->trim() : 0; }

std::optional<SpanHeap::Stats> crypto_heap_stats() {
  if (heap == nullptr) return std::nullopt;
  return heap->stats();
}

}  // namespace coapgw::dtls
