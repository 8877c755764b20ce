// coapgw::dtls::SessionState — everything an established lean DTLS session
// needs to go on after a restart without a handshake: peer, authenticated
// identity and PSK, cipher suite, traffic keys, epochs, the next write
// sequence number, the replay window and, for certificate sessions, the
// peer's certificate chain (so that a restore can verify it against the CA
// configured then). Produced by Engine::export_state(),
// consumed by Engine::import_state(). serialize()/deserialize() give a
// versioned, length-checked byte form; the caller adds file framing,
// integrity (HMAC) and permissions. The bytes hold secrets: treat them as keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "common/secret.hpp"

namespace coapgw::dtls {

struct SessionState {
  Address peer;
  std::string identity;            // PSK identity or certificate subject CN
  SecretBytes psk_key;  // empty for certificate sessions; SecretBytes: wiped when let go
  std::string psk_hint;
  std::uint16_t cipher_suite = 0;  // IANA TLS cipher suite number
  SecretBytes client_write_key, server_write_key;
  SecretBytes client_write_iv, server_write_iv;  // 4-byte salt (GCM/CCM) or 12-byte IV (ChaCha20)
  std::uint16_t read_epoch = 1;
  std::uint16_t write_epoch = 1;
  std::uint64_t write_sequence = 0;  // next sequence number to use (48 bits)
  // RFC 6347 4.1.2.6 window over the peer's record numbers at read_epoch.
  bool replay_any = false;
  std::uint64_t replay_max = 0;
  std::uint64_t replay_bits = 0;  // bit i set: replay_max - i was seen
  // Certificate sessions: the peer's chain as DER, its own certificate first
  // (at most max_peer_certs of max_peer_cert_size each); empty for PSK.
  std::vector<std::vector<std::byte>> peer_certs;
  // RFC 9146 Connection IDs (version 3): the one we issued (in the peer's records to us) and the
  // peer's (in ours); empty when none was negotiated for that direction.
  std::vector<std::byte> local_cid;
  std::vector<std::byte> peer_cid;
  // Version 4: the PSK came from the device registry (dtls.psk.lookup), not the local keys; such a
  // session may stand after a restart while the registry does not answer, a local one may not.
  bool registry_keyed = false;
};

// Version 2 added peer_certs, version 3 the Connection IDs, version 4 registry_keyed; older
// versions are still read.
inline constexpr std::uint8_t session_state_format_version = 4;
// Bounds deserialize() enforces (and serialize() assumes).
inline constexpr std::size_t max_state_identity_size = 1024;
inline constexpr std::size_t max_state_psk_size = 256;  // PSK_MAX_PSK_LEN in OpenSSL
inline constexpr std::size_t max_state_hint_size = 128;

// Empty on a state that breaks the bounds above. The bytes hold keys: wiped when let go.
SecretBytes serialize(const SessionState& state);
// nullopt on a wrong version, truncation, trailing bytes, an unknown suite,
// key/IV sizes that do not match the suite, or out-of-range numbers.
std::optional<SessionState> deserialize(std::span<const std::byte> bytes);

}  // namespace coapgw::dtls
