// coapgw::dtls::ServerSettings, ClientSettings and Failure — what a DTLS server
// or client context is built from, and why a session ended. Plain values, no OpenSSL.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/secret.hpp"
#include "dtls/credentials.hpp"
#include "dtls/psk_store.hpp"

namespace coapgw::dtls {

// RFC 9146 Connection IDs the server issues: `length` bytes (0 = never negotiate), the first
// `node_id`, the rest unpredictable (ServerContext::set_cid_issuer lets the worker keep them unique).
struct ConnectionIdSettings {
  std::size_t length = 0;
  std::uint8_t node_id = 0;
};
inline constexpr std::size_t min_cid_length = 2;  // node_id + at least one unpredictable byte
inline constexpr std::size_t max_cid_length = 32;

// RFC 5077 session tickets (see ticket_keys.hpp): a device whose session is gone resumes with an
// abbreviated handshake and the server keeps nothing per ticket.
struct TicketSettings {
  bool enabled = false;
  // The first seals new tickets, all are accepted. Empty when enabled: create() draws one at random
  // (the gateway draws one for all its workers, so that any worker resumes any ticket).
  std::vector<SecretBytes> secrets;
  std::chrono::seconds rotation{43200};  // key period; a ticket lives one to two periods
  // Seconds since the epoch (the rotation periods must agree between gateways); required when enabled.
  std::function<std::int64_t()> wall_clock;
};

struct ServerSettings {
  std::string psk_hint = "coapgw";     // "" = send no hint (no ServerKeyExchange for plain PSK)
  // null = PSK off when a certificate is configured. Without a certificate the
  // PSK suites stay on even with no keys, so keys can arrive by reload.
  std::shared_ptr<const PskStore> psk;
  std::string cert_file, key_file, ca_file;  // PKI; ca_file set => client cert required, identity = subject CN
  // ca_file already loaded (shared by every worker's context); null = create() loads ca_file itself.
  std::shared_ptr<const TrustStore> trust;
  // "" => RFC 7925 PSK-AES128-CCM8 + AES-128 CCM and GCM PSK suites
  // (+ ECDHE-ECDSA CCM8/GCM and ECDHE-RSA GCM when a certificate is configured).
  std::string ciphers;
  std::chrono::milliseconds handshake_timeout{30000};
  std::size_t mtu = 1280;  // link MTU; IP+UDP overhead is subtracted per peer family
  // DTLS retransmission: first timeout, doubled per retransmission up to 60 s (RFC 6347 4.2.4.1).
  std::chrono::milliseconds retransmit_initial{1000};
  // Cookie secret lifetime; the previous secret is still accepted.
  std::chrono::milliseconds cookie_rotation{60000};
  ConnectionIdSettings connection_id;
  TicketSettings tickets;
};

// The client role (coaps:// upstreams): one PSK, no certificates, no cookies of its own.
struct ClientSettings {
  std::string psk_identity;  // sent as is; at most 128 bytes, no NUL
  SecretString psk_key;      // raw key bytes, 1..256
  std::string ciphers;       // "" => ciphers::psk; AEAD suites only, as for the server
  std::chrono::milliseconds handshake_timeout{30000};
  std::size_t mtu = 1280;    // link MTU; IP+UDP overhead is subtracted per peer family
  std::chrono::milliseconds retransmit_initial{1000};  // doubled per retransmission up to 60 s
  // RFC 9146: nullopt = do not offer the connection_id extension; else offer it with this CID
  // (the one the server puts in its records to us; empty = plain records to us).
  std::optional<std::vector<std::byte>> connection_id;
  // RFC 5077: ask for a session ticket (Engine::resumption()) and accept one in connect().
  bool session_tickets = false;
};

enum class Failure : std::uint8_t {
  none,
  bad_psk_identity,      // PSK identity not in the store
  handshake_failed,      // anything else that broke the handshake (wrong key, no shared cipher, bad cert, ...)
  handshake_timeout,     // not established within handshake_timeout, or retransmissions exhausted
  fatal_alert_received,
  internal,
  sequence_exhausted,    // the 48-bit write sequence is used up; closed with close_notify
};

std::string_view to_string(Failure failure);

}  // namespace coapgw::dtls
