// The DTLS client/server engine tests again with OpenSSL's allocations on the crypto heap
// (dtls/crypto_heap.hpp), installed before OpenSSL allocates anything, as coapgwd does; plus the
// heap's own checks: OpenSSL really allocates from it, and freed handshake state goes back.
#include <gtest/gtest.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <thread>
#include <vector>

#include "dtls/crypto_heap.hpp"

namespace {

bool heap_installed = false;

TEST(CryptoHeap, OpenSslAllocatesFromItAndFreedSpansGoBackToTheSystem) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the crypto heap is off in sanitizer builds";
#endif
  ASSERT_TRUE(heap_installed);
  const auto before = *coapgw::dtls::crypto_heap_stats();
  std::vector<SSL_CTX*> contexts;
  std::vector<SSL*> sessions;
  for (int i = 0; i < 200; ++i) {  // SSL objects with their buffers: several spans
    contexts.push_back(SSL_CTX_new(DTLS_server_method()));
    ASSERT_NE(contexts.back(), nullptr);
    sessions.push_back(SSL_new(contexts.back()));
    ASSERT_NE(sessions.back(), nullptr);
  }
  const auto busy = *coapgw::dtls::crypto_heap_stats();
  EXPECT_GT(busy.live_bytes, before.live_bytes + 200 * 1000);
  EXPECT_GT(busy.spans_in_use, before.spans_in_use);
  for (auto* s : sessions) SSL_free(s);
  for (auto* c : contexts) SSL_CTX_free(c);
  const auto freed = *coapgw::dtls::crypto_heap_stats();
  EXPECT_LT(freed.live_bytes, busy.live_bytes);
  EXPECT_GT(freed.spans_free, 0u);
  EXPECT_GT(coapgw::dtls::trim_crypto_heap(), 0u);
  EXPECT_EQ(coapgw::dtls::crypto_heap_stats()->spans_returned, freed.spans_free);
}

// threads: 32 is more workers than shards (two share one, under its lock); a reload's new workers
// come after the old ones left; a block made on one thread is reallocated and freed on another
// (its shard is found by address). Every block comes from the heap and goes back to it.
TEST(CryptoHeap, MoreThreadsThanShardsThreadsThatComeAndGoAndFreesOnAnotherThread) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the crypto heap is off in sanitizer builds";
#endif
  ASSERT_TRUE(heap_installed);
  constexpr int thread_count = 32;
  constexpr int blocks = 64;
  constexpr std::size_t size = 1000;
  const auto before = *coapgw::dtls::crypto_heap_stats();
  std::vector<std::vector<void*>> made(thread_count);
  {
    std::vector<std::thread> workers;  // each ends once its blocks are made
    for (int t = 0; t < thread_count; ++t) {
      workers.emplace_back([&made, t] {
        for (int b = 0; b < blocks; ++b) made[t].push_back(OPENSSL_malloc(size));
      });
    }
    for (auto& w : workers) w.join();
  }
  for (const auto& m : made) {
    for (void* p : m) ASSERT_NE(p, nullptr);
  }
  const auto busy = *coapgw::dtls::crypto_heap_stats();
  EXPECT_GE(busy.live_bytes, before.live_bytes + thread_count * blocks * size);
  EXPECT_EQ(busy.fallback_allocations, before.fallback_allocations);
  {
    std::vector<std::thread> workers;  // the next generation: frees the blocks of another thread
    for (int t = 0; t < thread_count; ++t) {
      workers.emplace_back([&made, t] {
        auto& theirs = made[(t + 1) % thread_count];
        for (int b = 0; b < blocks; ++b) {
          void* own = OPENSSL_malloc(size);
          if (b % 2 == 0) theirs[b] = OPENSSL_realloc(theirs[b], 2 * size);
          OPENSSL_free(theirs[b]);
          OPENSSL_free(own);
        }
      });
    }
    for (auto& w : workers) w.join();
  }
  const auto after = *coapgw::dtls::crypto_heap_stats();
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_EQ(after.fallback_allocations, before.fallback_allocations);
}

}  // namespace

int main(int argc, char** argv) {
  heap_installed = coapgw::dtls::install_crypto_heap();  // before gtest or OpenSSL allocate
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
