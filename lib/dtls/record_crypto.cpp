#include "dtls/record_crypto.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

#include "dtls/prf.hpp"

namespace coapgw::dtls::detail {
namespace {

constexpr SuiteParams gcm128(std::uint16_t id) { return {id, Aead::aes_128_gcm, 16, 4, 8, 16, false}; }
constexpr SuiteParams gcm256(std::uint16_t id) { return {id, Aead::aes_256_gcm, 32, 4, 8, 16, true}; }
constexpr SuiteParams ccm128(std::uint16_t id, std::uint8_t tag) { return {id, Aead::aes_128_ccm, 16, 4, 8, tag, false}; }
constexpr SuiteParams ccm256(std::uint16_t id, std::uint8_t tag) { return {id, Aead::aes_256_ccm, 32, 4, 8, tag, false}; }
constexpr SuiteParams chacha(std::uint16_t id) { return {id, Aead::chacha20_poly1305, 32, 12, 0, 16, false}; }

// Every TLS 1.2 AEAD suite OpenSSL 3 offers with AES or ChaCha20 (RFC 5288,
// 5487, 6655, 7251, 7905, 5289). ARIA/Camellia-GCM and every CBC suite are absent
// on purpose: ServerContext::create refuses a cipher list that allows them.
constexpr SuiteParams suites[] = {
    gcm128(0x009C), gcm256(0x009D), gcm128(0x009E), gcm256(0x009F), gcm128(0x00A2), gcm256(0x00A3),
    gcm128(0x00A6), gcm256(0x00A7), gcm128(0x00A8), gcm256(0x00A9), gcm128(0x00AA), gcm256(0x00AB), gcm128(0x00AC), gcm256(0x00AD),
    gcm128(0xC02B), gcm256(0xC02C), gcm128(0xC02F), gcm256(0xC030),
    ccm128(0xC09C, 16), ccm256(0xC09D, 16), ccm128(0xC09E, 16), ccm256(0xC09F, 16),
    ccm128(0xC0A0, 8),  ccm256(0xC0A1, 8),  ccm128(0xC0A2, 8),  ccm256(0xC0A3, 8),
    ccm128(0xC0A4, 16), ccm256(0xC0A5, 16), ccm128(0xC0A6, 16), ccm256(0xC0A7, 16),
    ccm128(0xC0A8, 8),  ccm256(0xC0A9, 8),  ccm128(0xC0AA, 8),  ccm256(0xC0AB, 8),
    ccm128(0xC0AC, 16), ccm256(0xC0AD, 16), ccm128(0xC0AE, 8),  ccm256(0xC0AF, 8),
    chacha(0xCCA8), chacha(0xCCA9), chacha(0xCCAA), chacha(0xCCAB), chacha(0xCCAC), chacha(0xCCAD),
    chacha(0xCCAE),
};

const char* cipher_name(Aead aead) {
  switch (aead) {
    case Aead::aes_128_gcm: return "AES-128-GCM";
    case Aead::aes_256_gcm: return "AES-256-GCM";
    case Aead::aes_128_ccm: return "AES-128-CCM";
    case Aead::aes_256_ccm: return "AES-256-CCM";
    case Aead::chacha20_poly1305: return "ChaCha20-Poly1305";
  }
  return "";
}

bool is_ccm(Aead aead) { return aead == Aead::aes_128_ccm || aead == Aead::aes_256_ccm; }

const unsigned char* u8(const std::byte* p) { return reinterpret_cast<const unsigned char*>(p); }
unsigned char* u8(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }

void put_be(std::byte* at, std::uint64_t value, int count) {
  for (int i = count - 1; i >= 0; --i) {
    at[i] = static_cast<std::byte>(value & 0xff);
    value >>= 8;
  }
}

}  // namespace

const SuiteParams* find_suite(std::uint16_t iana_id) {
  for (const auto& s : suites) {
    if (s.id == iana_id) return &s;
  }
  return nullptr;
}

bool tls12_prf(bool sha384, std::span<const std::byte> secret, std::string_view label,
               std::span<const std::byte> seed, std::span<std::byte> out) {
  // P_hash(secret, label + seed); labels and seeds here are short (key expansion: 13 + 64 bytes).
  std::array<std::byte, 256> label_seed;
  if (label.size() + seed.size() > label_seed.size()) return false;
  std::memcpy(label_seed.data(), label.data(), label.size());
  if (!seed.empty()) std::memcpy(label_seed.data() + label.size(), seed.data(), seed.size());
  tls12_p_hash(sha384 ? PrfHash::sha384 : PrfHash::sha256, secret,
               std::span(label_seed).first(label.size() + seed.size()), out);
  return true;
}

bool derive_traffic_keys(const SuiteParams& suite, std::span<const std::byte> master_secret,
                         std::span<const std::byte> client_random, std::span<const std::byte> server_random,
                         TrafficKeys* client, TrafficKeys* server) {
  if (client_random.size() != 32 || server_random.size() != 32 || master_secret.size() != 48) return false;
  std::array<std::byte, 64> seed;
  std::copy(server_random.begin(), server_random.end(), seed.begin());
  std::copy(client_random.begin(), client_random.end(), seed.begin() + 32);
  std::array<std::byte, 2 * (max_key_size + max_iv_size)> block{};
  const std::size_t k = suite.key_size, v = suite.fixed_iv_size;
  const std::size_t length = 2 * (k + v);
  if (!tls12_prf(suite.prf_sha384, master_secret, "key expansion", seed, std::span(block).first(length))) {
    return false;
  }
  *client = {};
  *server = {};
  std::copy_n(block.begin(), k, client->key.begin());
  std::copy_n(block.begin() + static_cast<long>(k), k, server->key.begin());
  std::copy_n(block.begin() + static_cast<long>(2 * k), v, client->iv.begin());
  std::copy_n(block.begin() + static_cast<long>(2 * k + v), v, server->iv.begin());
  OPENSSL_cleanse(block.data(), block.size());
  return true;
}

std::array<std::byte, 12> record_nonce(const SuiteParams& suite, const TrafficKeys& keys,
                                       std::span<const std::byte> explicit_nonce, std::uint16_t epoch,
                                       std::uint64_t sequence) {
  std::array<std::byte, 12> nonce{};
  if (suite.explicit_nonce_size == 0) {
    // RFC 7905 2: the 64-bit record number, left-padded with zeros, XORed with the 12-byte IV.
    std::array<std::byte, 12> number{};
    put_be(number.data() + 4, (std::uint64_t{epoch} << 48) | (sequence & 0xffffffffffffULL), 8);
    for (std::size_t i = 0; i < 12; ++i) nonce[i] = keys.iv[i] ^ number[i];
  } else {
    // RFC 5288 3 / RFC 6655 3: 4-byte salt from the key block + the record's explicit nonce.
    std::copy_n(keys.iv.begin(), 4, nonce.begin());
    std::copy_n(explicit_nonce.begin(), 8, nonce.begin() + 4);
  }
  return nonce;
}

std::array<std::byte, 13> record_aad(std::uint16_t epoch, std::uint64_t sequence, std::uint8_t type,
                                     std::uint16_t version, std::size_t plaintext_length) {
  std::array<std::byte, 13> aad{};
  put_be(aad.data(), epoch, 2);
  put_be(aad.data() + 2, sequence, 6);
  aad[8] = static_cast<std::byte>(type);
  put_be(aad.data() + 9, version, 2);
  put_be(aad.data() + 11, plaintext_length, 2);
  return aad;
}

std::size_t record_aad_cid(std::uint16_t epoch, std::uint64_t sequence, std::uint16_t version,
                           std::span<const std::byte> cid, std::size_t inner_length,
                           std::array<std::byte, max_cid_aad_size>* out) {
  constexpr auto cid_type = static_cast<std::uint8_t>(wire::ContentType::tls12_cid);
  std::byte* a = out->data();
  put_be(a, 0xffffffffffffffffULL, 8);
  a[8] = static_cast<std::byte>(cid_type);
  a[9] = static_cast<std::byte>(cid.size());
  a[10] = static_cast<std::byte>(cid_type);
  put_be(a + 11, version, 2);
  put_be(a + 13, epoch, 2);
  put_be(a + 15, sequence, 6);
  std::copy(cid.begin(), cid.end(), a + 21);
  put_be(a + 21 + cid.size(), inner_length, 2);
  return 23 + cid.size();
}

std::unique_ptr<RecordCrypto> RecordCrypto::create() {
  std::unique_ptr<RecordCrypto> crypto(new RecordCrypto);
  for (auto* slots : {&crypto->sealers_, &crypto->openers_}) {
    for (auto& slot : *slots) {
      slot.ctx = EVP_CIPHER_CTX_new();
      if (slot.ctx == nullptr) return nullptr;
    }
  }
  crypto->scratch_ = std::make_unique<std::byte[]>(scratch_size);
  for (std::size_t i = 0; i < aead_count; ++i) {
    crypto->ciphers_[i] = EVP_CIPHER_fetch(nullptr, cipher_name(static_cast<Aead>(i)), nullptr);
    if (crypto->ciphers_[i] == nullptr) {
      ERR_clear_error();
      return nullptr;
    }
  }
  return crypto;
}

RecordCrypto::~RecordCrypto() {
  for (auto* slots : {&sealers_, &openers_}) {
    for (auto& slot : *slots) EVP_CIPHER_CTX_free(slot.ctx);
  }
  for (auto* c : ciphers_) EVP_CIPHER_free(c);
}

bool RecordCrypto::prepare(Slot& slot, Aead aead, bool encrypt, std::size_t nonce_size, std::size_t tag_size) {
  if (slot.tag_size == tag_size && slot.nonce_size == nonce_size) return true;
  slot.tag_size = 0;
  const bool ok =
      EVP_CipherInit_ex(slot.ctx, ciphers_[static_cast<std::size_t>(aead)], nullptr, nullptr, nullptr,
                        encrypt ? 1 : 0) == 1 &&
      EVP_CIPHER_CTX_ctrl(slot.ctx, EVP_CTRL_AEAD_SET_IVLEN, static_cast<int>(nonce_size), nullptr) == 1 &&
      // CCM fixes the tag length before the key; opening sets it again with the expected tag.
      (!is_ccm(aead) || EVP_CIPHER_CTX_ctrl(slot.ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(tag_size), nullptr) == 1);
  if (!ok) return false;
  slot.nonce_size = nonce_size;
  slot.tag_size = tag_size;
  return true;
}

bool RecordCrypto::seal(Aead aead, std::span<const std::byte> key, std::span<const std::byte> nonce,
                        std::span<const std::byte> aad, std::span<const std::byte> plaintext, std::size_t tag_size,
                        std::byte* out) {
  const bool ccm = is_ccm(aead);
  const unsigned char none = 0;
  const unsigned char* in = plaintext.empty() ? &none : u8(plaintext.data());
  int n = 0, tail = 0;
  Slot& slot = sealers_[static_cast<std::size_t>(aead)];
  evp_cipher_ctx_st* const ctx = slot.ctx;
  const bool ok =
      prepare(slot, aead, true, nonce.size(), tag_size) &&
      EVP_EncryptInit_ex(ctx, nullptr, nullptr, u8(key.data()), u8(nonce.data())) == 1 &&
      (!ccm || EVP_EncryptUpdate(ctx, nullptr, &n, nullptr, static_cast<int>(plaintext.size())) == 1) &&
      (aad.empty() || EVP_EncryptUpdate(ctx, nullptr, &n, u8(aad.data()), static_cast<int>(aad.size())) == 1) &&
      EVP_EncryptUpdate(ctx, u8(out), &n, in, static_cast<int>(plaintext.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx, u8(out) + n, &tail) == 1 && static_cast<std::size_t>(n + tail) == plaintext.size() &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(tag_size), u8(out) + plaintext.size()) == 1;
  if (!ok) {
    ERR_clear_error();
    slot.tag_size = 0;
  }
  return ok;
}

bool RecordCrypto::open(Aead aead, std::span<const std::byte> key, std::span<const std::byte> nonce,
                        std::span<const std::byte> aad, std::span<const std::byte> sealed, std::size_t tag_size,
                        std::byte* out) {
  if (sealed.size() < tag_size) return false;
  const bool ccm = is_ccm(aead);
  const std::size_t length = sealed.size() - tag_size;
  auto* tag = const_cast<unsigned char*>(u8(sealed.data()) + length);
  const unsigned char none = 0;
  const unsigned char* in = length == 0 ? &none : u8(sealed.data());
  unsigned char sink = 0;
  unsigned char* dst = out != nullptr ? u8(out) : &sink;
  int n = 0, tail = 0;
  Slot& slot = openers_[static_cast<std::size_t>(aead)];
  evp_cipher_ctx_st* const ctx = slot.ctx;
  bool ok =
      prepare(slot, aead, false, nonce.size(), tag_size) &&
      (!ccm || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(tag_size), tag) == 1) &&
      EVP_DecryptInit_ex(ctx, nullptr, nullptr, u8(key.data()), u8(nonce.data())) == 1 &&
      (!ccm || EVP_DecryptUpdate(ctx, nullptr, &n, nullptr, static_cast<int>(length)) == 1) &&
      (aad.empty() || EVP_DecryptUpdate(ctx, nullptr, &n, u8(aad.data()), static_cast<int>(aad.size())) == 1);
  if (ok && ccm) {
    // CCM verifies the tag inside the one Update over the whole ciphertext.
    ok = EVP_DecryptUpdate(ctx, dst, &n, in, static_cast<int>(length)) == 1;
  } else if (ok) {
    ok = EVP_DecryptUpdate(ctx, dst, &n, in, static_cast<int>(length)) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(tag_size), tag) == 1 &&
         EVP_DecryptFinal_ex(ctx, dst + n, &tail) == 1;
  }
  if (!ok) {
    ERR_clear_error();
    slot.tag_size = 0;  // a failed open may leave the context mid-operation: set it up afresh
    if (out != nullptr && length > 0) OPENSSL_cleanse(out, length);  // unauthenticated plaintext never escapes
  }
  return ok;
}

bool RecordCrypto::seal_record(const SuiteParams& suite, const TrafficKeys& keys, std::uint8_t type,
                               std::uint16_t epoch, std::uint64_t sequence, std::span<const std::byte> plaintext,
                               std::vector<std::byte>* record, std::span<const std::byte> cid) {
  if (plaintext.size() > max_plaintext_size || sequence > 0xffffffffffffULL || cid.size() > wire::max_cid_size) {
    return false;
  }
  // With a CID the protected part is DTLSInnerPlaintext: content, real type, no padding.
  const std::size_t inner = plaintext.size() + (cid.empty() ? 0 : 1);
  const std::size_t fragment = suite.explicit_nonce_size + inner + suite.tag_size;
  const std::size_t header = wire::record_header_size + cid.size();
  const std::size_t start = record->size();
  record->resize(start + header + fragment);
  std::byte* r = record->data() + start;
  r[0] = static_cast<std::byte>(cid.empty() ? type : static_cast<std::uint8_t>(wire::ContentType::tls12_cid));
  put_be(r + 1, 0xfefd, 2);
  put_be(r + 3, epoch, 2);
  put_be(r + 5, sequence, 6);
  std::copy(cid.begin(), cid.end(), r + 11);
  put_be(r + 11 + cid.size(), fragment, 2);
  std::byte* explicit_nonce = r + header;
  // The explicit nonce is the record number itself: unique per key as long as
  // the sequence never repeats, which the record layer guarantees.
  if (suite.explicit_nonce_size != 0) {
    put_be(explicit_nonce, epoch, 2);
    put_be(explicit_nonce + 2, sequence, 6);
  }
  std::byte* body = explicit_nonce + suite.explicit_nonce_size;
  const auto nonce = record_nonce(suite, keys, std::span(explicit_nonce, suite.explicit_nonce_size), epoch, sequence);
  bool sealed = false;
  const auto key = std::span(keys.key).first(suite.key_size);
  if (cid.empty()) {
    const auto aad = record_aad(epoch, sequence, type, 0xfefd, plaintext.size());
    sealed = seal(suite.aead, key, nonce, aad, plaintext, suite.tag_size, body);
  } else {
    // The inner plaintext is laid out in place and encrypted in place (EVP allows in == out).
    if (!plaintext.empty()) std::memmove(body, plaintext.data(), plaintext.size());
    body[plaintext.size()] = static_cast<std::byte>(type);
    std::array<std::byte, max_cid_aad_size> aad;
    const std::size_t aad_size = record_aad_cid(epoch, sequence, 0xfefd, cid, inner, &aad);
    sealed = seal(suite.aead, key, nonce, std::span(aad).first(aad_size), std::span(body, inner), suite.tag_size, body);
  }
  if (!sealed) {
    record->resize(start);
    return false;
  }
  return true;
}

std::optional<RecordCrypto::Opened> RecordCrypto::open_record(const SuiteParams& suite, const TrafficKeys& keys,
                                                              const wire::Record& record,
                                                              std::span<std::byte> plaintext) {
  const bool cid = record.type == static_cast<std::uint8_t>(wire::ContentType::tls12_cid);
  const std::size_t overhead = std::size_t{suite.explicit_nonce_size} + suite.tag_size;
  if (record.fragment.size() < overhead) return std::nullopt;
  const std::size_t length = record.fragment.size() - overhead;
  if (length > (cid ? scratch_size : max_plaintext_size) || length > plaintext.size()) return std::nullopt;
  const auto explicit_nonce = record.fragment.first(suite.explicit_nonce_size);
  const auto nonce = record_nonce(suite, keys, explicit_nonce, record.epoch, record.sequence);
  std::array<std::byte, max_cid_aad_size> aad_buffer;
  std::span<const std::byte> aad;
  std::array<std::byte, 13> plain_aad;
  if (cid) {
    aad = std::span(aad_buffer).first(record_aad_cid(record.epoch, record.sequence, record.version, record.cid,
                                                     length, &aad_buffer));
  } else {
    plain_aad = record_aad(record.epoch, record.sequence, record.type, record.version, length);
    aad = plain_aad;
  }
  if (!open(suite.aead, std::span(keys.key).first(suite.key_size), nonce, aad,
            record.fragment.subspan(suite.explicit_nonce_size), suite.tag_size, plaintext.data())) {
    return std::nullopt;
  }
  if (!cid) return Opened{length, record.type};
  // DTLSInnerPlaintext: the real type is the last non-zero byte; zeros after it are padding.
  std::size_t end = length;
  while (end > 0 && plaintext[end - 1] == std::byte{0}) --end;
  if (end == 0 || end - 1 > max_plaintext_size) {
    OPENSSL_cleanse(plaintext.data(), length);
    return std::nullopt;
  }
  return Opened{end - 1, std::to_integer<std::uint8_t>(plaintext[end - 1])};
}

}  // namespace coapgw::dtls::detail
