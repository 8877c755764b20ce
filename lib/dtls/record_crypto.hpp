// coapgw::dtls::detail record protection primitives for the lean record layer:
// the AEAD cipher suites it supports (by IANA id), the TLS 1.2 PRF and key
// block (RFC 5246 5, 6.3), and DTLS 1.2 AEAD record sealing/opening
// (RFC 5246 6.2.3.3 with RFC 6347 4.1's epoch||sequence, RFC 5288/6655 nonces,
// RFC 7905 for ChaCha20-Poly1305), in the plain format and in RFC 9146's
// tls12_cid format (Connection ID in the header, DTLSInnerPlaintext, its own
// additional data). RecordCrypto holds the per-worker OpenSSL
// cipher contexts; sessions hold only keys and IVs. Internal header, no
// OpenSSL types.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "dtls/wire.hpp"

struct evp_cipher_ctx_st;
struct evp_cipher_st;

namespace coapgw::dtls::detail {

enum class Aead : std::uint8_t { aes_128_gcm, aes_256_gcm, aes_128_ccm, aes_256_ccm, chacha20_poly1305 };
inline constexpr std::size_t aead_count = 5;

struct SuiteParams {
  std::uint16_t id = 0;  // IANA TLS cipher suite number
  Aead aead = Aead::aes_128_gcm;
  std::uint8_t key_size = 0;             // 16 or 32
  std::uint8_t fixed_iv_size = 0;        // 4 (salt) for GCM/CCM, 12 for ChaCha20-Poly1305
  std::uint8_t explicit_nonce_size = 0;  // 8 for GCM/CCM, 0 for ChaCha20-Poly1305
  std::uint8_t tag_size = 0;             // 16, or 8 for CCM_8
  bool prf_sha384 = false;               // PRF hash: SHA-384 for the *_SHA384 suites, else SHA-256
};

// nullptr for suites the lean layer cannot protect (non-AEAD, ARIA, TLS 1.3 ids).
const SuiteParams* find_suite(std::uint16_t iana_id);

inline constexpr std::size_t max_key_size = 32;
inline constexpr std::size_t max_iv_size = 12;
inline constexpr std::size_t max_plaintext_size = 16384;  // RFC 6347 4.1: 2^14
// A tls12_cid record's DTLSInnerPlaintext: the content, its real type and zero
// padding. We send no padding; a peer's inner plaintext may be up to this much
// longer than the largest content.
inline constexpr std::size_t max_inner_padding = 255;
inline constexpr std::size_t scratch_size = max_plaintext_size + 1 + max_inner_padding;

struct TrafficKeys {
  std::array<std::byte, max_key_size> key{};
  std::array<std::byte, max_iv_size> iv{};
};

// TLS 1.2 PRF (P_SHA256 or P_SHA384), prf.hpp's pre-keyed HMAC; false only when label + seed
// exceed 256 bytes.
bool tls12_prf(bool sha384, std::span<const std::byte> secret, std::string_view label,
               std::span<const std::byte> seed, std::span<std::byte> out);

// key_block = PRF(master_secret, "key expansion", server_random + client_random),
// split as client_write_key, server_write_key, client_write_IV, server_write_IV
// (AEAD suites have no MAC keys).
bool derive_traffic_keys(const SuiteParams& suite, std::span<const std::byte> master_secret,
                         std::span<const std::byte> client_random, std::span<const std::byte> server_random,
                         TrafficKeys* client, TrafficKeys* server);

// Per-worker AEAD engine. One EVP_CIPHER_CTX per AEAD and direction, set up (cipher, nonce and
// tag length) once and then only re-keyed per record: re-initialising with the cipher would
// free and rebuild OpenSSL's provider context and re-send the length controls on every record,
// which the profile showed as the record layer's main cost.
class RecordCrypto {
 public:
  static std::unique_ptr<RecordCrypto> create();  // nullptr when OpenSSL lacks an AEAD
  ~RecordCrypto();
  RecordCrypto(const RecordCrypto&) = delete;
  RecordCrypto& operator=(const RecordCrypto&) = delete;

  // Raw AEAD: `out` receives ciphertext followed by the tag (plaintext.size() + tag_size bytes).
  bool seal(Aead aead, std::span<const std::byte> key, std::span<const std::byte> nonce,
            std::span<const std::byte> aad, std::span<const std::byte> plaintext, std::size_t tag_size,
            std::byte* out);
  // `sealed` is ciphertext + tag; `out` receives sealed.size() - tag_size bytes, meaningful only on true.
  bool open(Aead aead, std::span<const std::byte> key, std::span<const std::byte> nonce,
            std::span<const std::byte> aad, std::span<const std::byte> sealed, std::size_t tag_size,
            std::byte* out);

  // One DTLS 1.2 record (header + protected fragment) appended to `record`. With a non-empty `cid`
  // (at most wire::max_cid_size) the record is a tls12_cid record (RFC 9146 4, 5): `type` goes
  // inside, after the plaintext, with no padding.
  bool seal_record(const SuiteParams& suite, const TrafficKeys& keys, std::uint8_t type, std::uint16_t epoch,
                   std::uint64_t sequence, std::span<const std::byte> plaintext, std::vector<std::byte>* record,
                   std::span<const std::byte> cid = {});
  struct Opened {
    std::size_t length = 0;  // plaintext bytes at the start of the scratch passed in
    std::uint8_t type = 0;   // the record's type; for tls12_cid records the real type from inside
  };
  // Authenticates and decrypts record.fragment into `plaintext` (capacity at
  // least scratch_size); nullopt when the record is malformed or fails
  // authentication. A tls12_cid record is opened with record.cid in the
  // additional data; its inner plaintext must hold a non-zero type.
  std::optional<Opened> open_record(const SuiteParams& suite, const TrafficKeys& keys, const wire::Record& record,
                                    std::span<std::byte> plaintext);

  // scratch_size bytes of scratch for opened plaintexts, shared by the worker's sessions.
  std::span<std::byte> scratch() { return {scratch_.get(), scratch_size}; }

 private:
  RecordCrypto() = default;
  std::unique_ptr<std::byte[]> scratch_;
  // A context with its cipher and lengths in place; tag_size 0 = not set up (or left unusable by
  // a failed call), so the next call sets it up afresh.
  struct Slot {
    evp_cipher_ctx_st* ctx = nullptr;
    std::size_t nonce_size = 0;
    std::size_t tag_size = 0;
  };
  bool prepare(Slot& slot, Aead aead, bool encrypt, std::size_t nonce_size, std::size_t tag_size);

  std::array<Slot, aead_count> sealers_{};
  std::array<Slot, aead_count> openers_{};
  std::array<evp_cipher_st*, aead_count> ciphers_{};
};

// Record-number nonce and AAD for DTLS 1.2 AEAD records.
std::array<std::byte, 12> record_nonce(const SuiteParams& suite, const TrafficKeys& keys,
                                       std::span<const std::byte> explicit_nonce, std::uint16_t epoch,
                                       std::uint64_t sequence);
std::array<std::byte, 13> record_aad(std::uint16_t epoch, std::uint64_t sequence, std::uint8_t type,
                                     std::uint16_t version, std::size_t plaintext_length);
// RFC 9146 5: seq_num_placeholder (8 x 0xff), tls12_cid, cid_length, tls12_cid, version, epoch,
// sequence_number, cid, length_of_DTLSInnerPlaintext; written to `out`, whose size is returned.
inline constexpr std::size_t max_cid_aad_size = 23 + wire::max_cid_size;
std::size_t record_aad_cid(std::uint16_t epoch, std::uint64_t sequence, std::uint16_t version,
                           std::span<const std::byte> cid, std::size_t inner_length,
                           std::array<std::byte, max_cid_aad_size>* out);

}  // namespace coapgw::dtls::detail
