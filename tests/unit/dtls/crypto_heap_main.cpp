// The DTLS client/server engine tests again with OpenSSL's allocations on the crypto heap
// (dtls/crypto_heap.hpp), installed before OpenSSL allocates anything, as coapgwd does; plus the
// heap's own checks: OpenSSL really allocates from it, and freed handshake state goes back.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

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

}  // namespace

int main(int argc, char** argv) {
  heap_installed = coapgw::dtls::install_crypto_heap();  // before gtest or OpenSSL allocate
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
