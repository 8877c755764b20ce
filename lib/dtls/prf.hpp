// coapgw::dtls::detail::Hmac and tls12_p_hash — HMAC-SHA256/384 with the key's inner and outer
// hash states computed once, and the TLS 1.2 PRF (RFC 5246 section 5) built on it.
//
// Why not OpenSSL's EVP_MAC / EVP_KDF "TLS1-PRF": in OpenSSL 3 every HMAC there duplicates and
// frees provider contexts, fetches the digest and matches parameter names, and re-keys from the
// raw key; a PSK handshake runs about 30 HMACs (cookie, master secret, key block, two Finished),
// and that bookkeeping cost more than the hashing (issue 17, item 5; bench/NOTES.md "Cheaper
// handshakes"). The hashing itself is still OpenSSL's SHA-256/384 (with the CPU's SHA
// instructions). No allocation, no OpenSSL headers here. Internal header.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

namespace coapgw::dtls::detail {

enum class PrfHash : std::uint8_t { sha256, sha384 };

inline constexpr std::size_t hash_size(PrfHash hash) { return hash == PrfHash::sha256 ? 32 : 48; }
inline constexpr std::size_t max_hash_size = 48;

class Hmac {
 public:
  Hmac() = default;
  Hmac(PrfHash hash, std::span<const std::byte> key) { set_key(hash, key); }
  ~Hmac();  // cleanses both states: they are as good as the key
  Hmac(const Hmac&) = delete;
  Hmac& operator=(const Hmac&) = delete;

  void set_key(PrfHash hash, std::span<const std::byte> key);
  std::size_t size() const { return hash_size(hash_); }
  // HMAC(key, concatenation of parts) -> out[0, size()).
  void compute(std::initializer_list<std::span<const std::byte>> parts, std::byte* out) const;

 private:
  // Room for OpenSSL's SHA512_CTX (216 bytes; SHA256_CTX is 112), checked in prf.cpp.
  using State = std::array<std::uint64_t, 28>;
  PrfHash hash_ = PrfHash::sha256;
  State inner_{};
  State outer_{};
};

// P_hash(secret, seed) -> out (RFC 5246 5): the TLS 1.2 PRF when `seed` is label + seed.
void tls12_p_hash(PrfHash hash, std::span<const std::byte> secret, std::span<const std::byte> seed,
                  std::span<std::byte> out);

}  // namespace coapgw::dtls::detail
