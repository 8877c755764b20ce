// coapgw::dtls::TicketKeys — the keys that protect RFC 5077 session tickets, so that the server
// keeps no state per resumable session.
//
// Keys are not stored but derived: for each secret and each rotation period p (wall-clock seconds
// divided by `rotation`), name, AES-256 key and HMAC-SHA256 key are HMAC-SHA256(secret, label ||
// p). New tickets use the first secret's key of the current period; a ticket is accepted under the
// current or the previous period of any secret (then it is renewed). So keys rotate on a schedule
// with no timer and no shared mutable state between workers, and gateways that share the secrets
// (dtls.tickets.key_file) and roughly agree on the time decrypt each other's tickets. The clock is
// passed in. Not thread-safe: one per ServerContext.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "common/secret.hpp"

namespace coapgw::dtls {

inline constexpr std::size_t ticket_key_name_size = 16;  // RFC 5077 key_name
inline constexpr std::size_t min_ticket_secret_size = 32;
inline constexpr std::size_t max_ticket_secret_size = 64;
inline constexpr std::size_t max_ticket_secrets = 8;

struct TicketKey {
  std::array<std::uint8_t, ticket_key_name_size> name{};
  std::array<std::uint8_t, 32> aes{};   // AES-256-CBC (RFC 5077 4's recommended construction)
  std::array<std::uint8_t, 32> hmac{};  // HMAC-SHA256 over the encrypted state
};

class TicketKeys {
 public:
  // secrets: each min..max_ticket_secret_size bytes, at most max_ticket_secrets; rotation > 0.
  // Empty error = valid.
  static std::string check(const std::vector<SecretBytes>& secrets, std::chrono::seconds rotation);
  // A fresh secret of min_ticket_secret_size random bytes; empty when the RNG fails.
  static SecretBytes random_secret();
  TicketKeys(std::vector<SecretBytes> secrets, std::chrono::seconds rotation);
  ~TicketKeys();
  TicketKeys(const TicketKeys&) = delete;
  TicketKeys& operator=(const TicketKeys&) = delete;

  // The key new tickets are sealed with at `unix_seconds`; nullptr when derivation failed.
  const TicketKey* for_new_ticket(std::int64_t unix_seconds);
  struct Found {
    const TicketKey* key = nullptr;  // nullptr: no key of that name (full handshake)
    bool renew = false;              // an older key: issue a fresh ticket
  };
  Found find(std::span<const std::uint8_t, ticket_key_name_size> name, std::int64_t unix_seconds);
  std::chrono::seconds rotation() const { return rotation_; }

 private:
  void refresh(std::int64_t period);
  std::vector<SecretBytes> secrets_;
  std::chrono::seconds rotation_;
  std::int64_t period_ = std::numeric_limits<std::int64_t>::min();
  bool derived_ = false;
  // keys_[2 i]: secret i at the current period, keys_[2 i + 1]: at the previous one.
  std::vector<TicketKey> keys_;
};

}  // namespace coapgw::dtls
