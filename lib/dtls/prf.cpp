// HMAC and the TLS 1.2 PRF on OpenSSL's low-level SHA-256/384 (see prf.hpp for why). These
// functions are deprecated in OpenSSL 3 in favour of EVP_Digest*, whose provider dispatch and
// context duplication are exactly the cost this file avoids; they remain in every OpenSSL 3.x.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "dtls/prf.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

namespace coapgw::dtls::detail {
namespace {

constexpr std::size_t block_size(PrfHash hash) { return hash == PrfHash::sha256 ? 64 : 128; }

unsigned char* u8(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }

// One hash of the kind `hash` over a started state.
struct Hasher {
  PrfHash hash;
  void init(void* state) const {
    if (hash == PrfHash::sha256) SHA256_Init(static_cast<SHA256_CTX*>(state));
    else SHA384_Init(static_cast<SHA512_CTX*>(state));
  }
  void update(void* state, const void* data, std::size_t size) const {
    if (size == 0) return;
    if (hash == PrfHash::sha256) SHA256_Update(static_cast<SHA256_CTX*>(state), data, size);
    else SHA384_Update(static_cast<SHA512_CTX*>(state), data, size);
  }
  void final(void* state, std::byte* out) const {
    if (hash == PrfHash::sha256) SHA256_Final(u8(out), static_cast<SHA256_CTX*>(state));
    else SHA384_Final(u8(out), static_cast<SHA512_CTX*>(state));
  }
};

}  // namespace

Hmac::~Hmac() {
  OPENSSL_cleanse(inner_.data(), sizeof inner_);
  OPENSSL_cleanse(outer_.data(), sizeof outer_);
}

void Hmac::set_key(PrfHash hash, std::span<const std::byte> key) {
  static_assert(sizeof(SHA512_CTX) <= sizeof(State) && sizeof(SHA256_CTX) <= sizeof(State));
  hash_ = hash;
  const Hasher h{hash};
  const std::size_t block = block_size(hash);
  std::array<std::byte, 128> pad{};
  if (key.size() > block) {
    // RFC 2104 2: a key longer than the block is hashed first.
    h.init(inner_.data());
    h.update(inner_.data(), key.data(), key.size());
    h.final(inner_.data(), pad.data());
  } else {
    std::copy(key.begin(), key.end(), pad.begin());
  }
  for (std::size_t i = 0; i < block; ++i) pad[i] ^= std::byte{0x36};
  h.init(inner_.data());
  h.update(inner_.data(), pad.data(), block);
  for (std::size_t i = 0; i < block; ++i) pad[i] ^= std::byte{0x36 ^ 0x5c};
  h.init(outer_.data());
  h.update(outer_.data(), pad.data(), block);
  OPENSSL_cleanse(pad.data(), pad.size());
}

void Hmac::compute(std::initializer_list<std::span<const std::byte>> parts, std::byte* out) const {
  const Hasher h{hash_};
  State state = inner_;
  for (const auto& part : parts) h.update(state.data(), part.data(), part.size());
  std::array<std::byte, max_hash_size> inner_hash{};
  h.final(state.data(), inner_hash.data());
  state = outer_;
  h.update(state.data(), inner_hash.data(), size());
  h.final(state.data(), out);
  OPENSSL_cleanse(state.data(), sizeof state);
  OPENSSL_cleanse(inner_hash.data(), inner_hash.size());
}

void tls12_p_hash(PrfHash hash, std::span<const std::byte> secret, std::span<const std::byte> seed,
                  std::span<std::byte> out) {
  const Hmac mac(hash, secret);
  const std::size_t n = mac.size();
  std::array<std::byte, max_hash_size> a{}, chunk{};
  mac.compute({seed}, a.data());  // A(1)
  const std::span<const std::byte> a_span(a.data(), n);
  for (std::size_t done = 0; done < out.size();) {
    mac.compute({a_span, seed}, chunk.data());
    const std::size_t take = std::min(n, out.size() - done);
    std::memcpy(out.data() + done, chunk.data(), take);
    done += take;
    if (done < out.size()) mac.compute({a_span}, a.data());  // A(i+1)
  }
  OPENSSL_cleanse(a.data(), a.size());
  OPENSSL_cleanse(chunk.data(), chunk.size());
}

}  // namespace coapgw::dtls::detail
