#include "dtls/ticket_keys.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "common/bytes.hpp"

namespace coapgw::dtls {
namespace {

// HMAC-SHA256(secret, label || be64(period)) truncated to out.size() (at most 32 bytes).
bool derive(const SecretBytes& secret, const char* label, std::int64_t period, std::span<std::uint8_t> out) {
  std::vector<std::uint8_t> message(label, label + std::strlen(label));
  bytes::append_be(message, static_cast<std::uint64_t>(period), 8);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  const bool ok = HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), message.data(), message.size(),
                       mac, &length) != nullptr &&
                  length >= out.size();
  if (ok) std::copy_n(mac, out.size(), out.begin());
  OPENSSL_cleanse(mac, sizeof mac);
  return ok;
}

bool derive_key(const SecretBytes& secret, std::int64_t period, TicketKey* key) {
  return derive(secret, "coapgw ticket name", period, key->name) &&
         derive(secret, "coapgw ticket aes", period, key->aes) &&
         derive(secret, "coapgw ticket hmac", period, key->hmac);
}

}  // namespace

std::string TicketKeys::check(const std::vector<SecretBytes>& secrets, std::chrono::seconds rotation) {
  if (rotation.count() <= 0) return "dtls: tickets.rotation must be > 0";
  if (secrets.empty()) return "dtls: tickets need at least one secret";
  if (secrets.size() > max_ticket_secrets) {
    return "dtls: tickets: at most " + std::to_string(max_ticket_secrets) + " secrets";
  }
  for (const auto& s : secrets) {
    if (s.size() < min_ticket_secret_size || s.size() > max_ticket_secret_size) {
      return "dtls: tickets: each secret must be " + std::to_string(min_ticket_secret_size) + ".." +
             std::to_string(max_ticket_secret_size) + " bytes";
    }
  }
  return {};
}

SecretBytes TicketKeys::random_secret() {
  SecretBytes secret(min_ticket_secret_size);
  if (RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()), static_cast<int>(secret.size())) != 1) {
    ERR_clear_error();
    return {};
  }
  return secret;
}

TicketKeys::TicketKeys(std::vector<SecretBytes> secrets, std::chrono::seconds rotation)
    : secrets_(std::move(secrets)), rotation_(rotation), keys_(2 * secrets_.size()) {}

TicketKeys::~TicketKeys() { OPENSSL_cleanse(keys_.data(), keys_.size() * sizeof(TicketKey)); }

void TicketKeys::refresh(std::int64_t period) {
  if (period == period_) return;
  derived_ = true;
  for (std::size_t i = 0; i < secrets_.size(); ++i) {
    derived_ = derive_key(secrets_[i], period, &keys_[2 * i]) && derive_key(secrets_[i], period - 1, &keys_[2 * i + 1]) &&
               derived_;
  }
  period_ = period;
}

const TicketKey* TicketKeys::for_new_ticket(std::int64_t unix_seconds) {
  refresh(unix_seconds / rotation_.count());
  return derived_ && !keys_.empty() ? &keys_[0] : nullptr;
}

TicketKeys::Found TicketKeys::find(std::span<const std::uint8_t, ticket_key_name_size> name,
                                   std::int64_t unix_seconds) {
  refresh(unix_seconds / rotation_.count());
  if (!derived_) return {};
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    if (CRYPTO_memcmp(keys_[i].name.data(), name.data(), ticket_key_name_size) == 0) return {&keys_[i], i != 0};
  }
  return {};
}

}  // namespace coapgw::dtls
