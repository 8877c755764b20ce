// The pre-keyed HMAC and TLS 1.2 PRF (dtls/prf.hpp) and the coapgw-prf provider that gives the
// PRF to libssl (dtls/prf_provider.hpp): RFC 4231 vectors, and byte-for-byte agreement with
// OpenSSL's own HMAC and TLS1-PRF for every size a handshake uses and some it does not.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/core_dispatch.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dtls/prf.hpp"
#include "dtls/prf_provider.hpp"

namespace coapgw::dtls::detail {
namespace {

using Bytes = std::vector<std::byte>;

Bytes pattern(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>(seed + 31 * i + (i >> 3));
  return b;
}

Bytes text(std::string_view s) {
  return Bytes(reinterpret_cast<const std::byte*>(s.data()), reinterpret_cast<const std::byte*>(s.data()) + s.size());
}

std::string to_hex(std::span<const std::byte> b) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (auto x : b) {
    out += digits[std::to_integer<int>(x) >> 4];
    out += digits[std::to_integer<int>(x) & 15];
  }
  return out;
}

Bytes hmac(PrfHash hash, const Bytes& key, std::initializer_list<std::span<const std::byte>> parts) {
  Bytes out(hash_size(hash));
  Hmac(hash, key).compute(parts, out.data());
  return out;
}

Bytes openssl_hmac(PrfHash hash, const Bytes& key, const Bytes& data) {
  Bytes out(hash_size(hash));
  std::size_t length = 0;
  EVP_Q_mac(nullptr, "HMAC", nullptr, hash == PrfHash::sha256 ? "SHA256" : "SHA384", nullptr, key.data(), key.size(),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(),
            reinterpret_cast<unsigned char*>(out.data()), out.size(), &length);
  EXPECT_EQ(length, out.size());
  return out;
}

// TLS1-PRF from the provider named by `properties`; each seed is passed as its own parameter, as
// libssl does.
Bytes kdf_prf(const char* properties, const char* digest, const Bytes& secret, const std::vector<Bytes>& seeds,
              std::size_t n) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_TLS1_PRF, properties);
  EXPECT_NE(kdf, nullptr);
  if (kdf == nullptr) return {};
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  std::vector<OSSL_PARAM> params;
  params.push_back(OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(digest), 0));
  params.push_back(OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, const_cast<std::byte*>(secret.data()),
                                                     secret.size()));
  for (const auto& s : seeds) {
    params.push_back(OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, const_cast<std::byte*>(s.data()), s.size()));
  }
  params.push_back(OSSL_PARAM_construct_end());
  Bytes out(n);
  EXPECT_EQ(EVP_KDF_derive(ctx, reinterpret_cast<unsigned char*>(out.data()), n, params.data()), 1);
  EVP_KDF_CTX_free(ctx);
  return out;
}

TEST(Hmac, Rfc4231Vectors) {
  const Bytes key1(20, std::byte{0x0b});
  const Bytes hi = text("Hi There");
  EXPECT_EQ(to_hex(hmac(PrfHash::sha256, key1, {hi})),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(to_hex(hmac(PrfHash::sha384, key1, {hi})),
            "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6");
  // Case 6: a key longer than the block is hashed first.
  const Bytes key6(131, std::byte{0xaa});
  const Bytes big = text("Test Using Larger Than Block-Size Key - Hash Key First");
  EXPECT_EQ(to_hex(hmac(PrfHash::sha256, key6, {big})),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_EQ(to_hex(hmac(PrfHash::sha384, key6, {big})),
            "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952");
}

TEST(Hmac, AgreesWithOpenSslForEveryKeyAndDataSize) {
  for (auto hash : {PrfHash::sha256, PrfHash::sha384}) {
    for (std::size_t key_size : {1, 32, 63, 64, 65, 127, 128, 129, 300}) {
      const Bytes key = pattern(key_size, 7);
      for (std::size_t data_size : {0, 1, 55, 56, 64, 111, 112, 128, 200}) {
        const Bytes data = pattern(data_size, 3);
        // Split in two parts: the concatenation is what is authenticated.
        const std::span<const std::byte> all(data);
        const auto a = all.first(data_size / 3), b = all.subspan(data_size / 3);
        EXPECT_EQ(to_hex(hmac(hash, key, {a, b})), to_hex(openssl_hmac(hash, key, data))) << key_size << " " << data_size;
      }
    }
  }
}

TEST(Hmac, OneKeyManyMessages) {
  // The pre-keyed states are not consumed by a computation.
  const Bytes key = pattern(32, 1);
  const Hmac mac(PrfHash::sha256, key);
  for (int i = 0; i < 3; ++i) {
    const Bytes data = pattern(10 + i, static_cast<std::uint8_t>(i));
    Bytes out(32);
    mac.compute({data}, out.data());
    EXPECT_EQ(out, openssl_hmac(PrfHash::sha256, key, data));
  }
}

TEST(Tls12PHash, AgreesWithOpenSslTls1Prf) {
  for (auto hash : {PrfHash::sha256, PrfHash::sha384}) {
    const char* digest = hash == PrfHash::sha256 ? "SHA256" : "SHA384";
    // Master secret (48 from a PSK premaster), key blocks (40..88), Finished (12), odd sizes.
    for (std::size_t n : {1, 12, 31, 32, 33, 40, 48, 49, 72, 88, 100, 200}) {
      const Bytes secret = pattern(n % 2 == 0 ? 48 : 68, 11);
      const Bytes seed = pattern(13 + 64, 5);
      Bytes ours(n);
      tls12_p_hash(hash, secret, seed, ours);
      EXPECT_EQ(ours, kdf_prf("provider=default", digest, secret, {seed}, n)) << digest << " " << n;
    }
  }
}

TEST(PrfProvider, LoadsAndMatchesOpenSsl) {
  ASSERT_NE(prf_provider_query(), nullptr);
  EXPECT_STREQ(prf_provider_query(), "?provider=coapgw-prf");
  const Bytes secret = pattern(48, 9);
  // As libssl passes them: label, then up to four seeds, some empty.
  const std::vector<Bytes> seeds = {text("key expansion"), pattern(32, 1), pattern(32, 2), {}, pattern(5, 3)};
  for (const char* digest : {"SHA256", "SHA2-256", "SHA384", "SHA2-384"}) {
    for (std::size_t n : {12, 48, 72}) {
      EXPECT_EQ(kdf_prf("provider=coapgw-prf", digest, secret, seeds, n),
                kdf_prf("provider=default", digest, secret, seeds, n))
          << digest << " " << n;
    }
  }
  // A digest it does not compute itself (TLS 1.0/1.1's MD5-SHA1) goes to OpenSSL's implementation.
  EXPECT_EQ(kdf_prf("provider=coapgw-prf", "MD5-SHA1", secret, seeds, 48),
            kdf_prf("provider=default", "MD5-SHA1", secret, seeds, 48));
}

TEST(PrfProvider, RefusesWhatOpenSslRefuses) {
  ASSERT_NE(prf_provider_query(), nullptr);
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_TLS1_PRF, "provider=coapgw-prf");
  ASSERT_NE(kdf, nullptr);
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  unsigned char out[16];
  // No secret and no seed.
  OSSL_PARAM only_digest[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
                              OSSL_PARAM_construct_end()};
  EXPECT_NE(EVP_KDF_derive(ctx, out, sizeof out, only_digest), 1);
  // Seeds beyond 1024 bytes in all.
  Bytes huge(1025);
  const Bytes secret = pattern(16, 1);
  OSSL_PARAM too_much[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, const_cast<std::byte*>(secret.data()), secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, huge.data(), huge.size()), OSSL_PARAM_construct_end()};
  EXPECT_NE(EVP_KDF_derive(ctx, out, sizeof out, too_much), 1);
  EVP_KDF_CTX_free(ctx);
}

// A stand-in for another provider's TLS1-PRF (the FIPS provider's, say): every byte 0x5a.
void* other_new(void*) {
  static int context;
  return &context;
}
void other_free(void*) {}
int other_derive(void*, unsigned char* key, std::size_t keylen, const OSSL_PARAM[]) {
  std::memset(key, 0x5a, keylen);
  return 1;
}
template <typename F>
void (*as_fn(F* f))() {
  return reinterpret_cast<void (*)()>(f);
}
const OSSL_DISPATCH other_functions[] = {{OSSL_FUNC_KDF_NEWCTX, as_fn(other_new)},
                                         {OSSL_FUNC_KDF_FREECTX, as_fn(other_free)},
                                         {OSSL_FUNC_KDF_DERIVE, as_fn(other_derive)},
                                         {0, nullptr}};
const OSSL_ALGORITHM other_kdfs[] = {{"TLS1-PRF", "provider=other-prf", other_functions, ""},
                                     {nullptr, nullptr, nullptr, nullptr}};
const OSSL_ALGORITHM* other_query(void*, int operation_id, int* no_cache) {
  *no_cache = 0;
  return operation_id == OSSL_OP_KDF ? other_kdfs : nullptr;
}
const OSSL_DISPATCH other_provider[] = {{OSSL_FUNC_PROVIDER_QUERY_OPERATION, as_fn(other_query)}, {0, nullptr}};
int other_init(const OSSL_CORE_HANDLE*, const OSSL_DISPATCH*, const OSSL_DISPATCH** out, void** provctx) {
  *out = other_provider;
  *provctx = nullptr;
  return 1;
}

// In a fresh process: OpenSSL without its default provider (a FIPS-like configuration, where
// another provider has the TLS1-PRF), and a digest coapgw-prf does not compute itself.
[[noreturn]] void derive_without_the_default_provider() {
  // Loading a provider by name turns OpenSSL's fallback to "default" off, as a configuration that
  // names its providers does.
  if (OSSL_PROVIDER_add_builtin(nullptr, "other-prf", other_init) != 1 || OSSL_PROVIDER_load(nullptr, "other-prf") == nullptr)
    std::_Exit(2);
  if (prf_provider_query() == nullptr) std::_Exit(3);
  if (OSSL_PROVIDER_available(nullptr, "default") == 1) std::_Exit(4);
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_TLS1_PRF, "provider=coapgw-prf");
  EVP_KDF_CTX* ctx = kdf != nullptr ? EVP_KDF_CTX_new(kdf) : nullptr;
  EVP_KDF_free(kdf);
  if (ctx == nullptr) std::_Exit(5);
  const Bytes secret = pattern(48, 9), seed = pattern(32, 1);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA512"), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, const_cast<std::byte*>(secret.data()), secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, const_cast<std::byte*>(seed.data()), seed.size()),
      OSSL_PARAM_construct_end()};
  unsigned char out[16] = {};
  if (EVP_KDF_derive(ctx, out, sizeof out, params) != 1) std::_Exit(6);  // no fallback found
  std::_Exit(out[0] == 0x5a && out[15] == 0x5a ? 0 : 7);
}

TEST(PrfProviderDeathTest, DigestsItDoesNotComputeGoToAnotherProviderNotOnlyTheDefault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process: the default provider not loaded yet
  EXPECT_EXIT(derive_without_the_default_provider(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace coapgw::dtls::detail
