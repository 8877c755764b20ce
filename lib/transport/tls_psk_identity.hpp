// coapgw::transport::TlsPskIdentity — the PSK identity a TLS client names, read from the plaintext
// handshake bytes it sends before they reach OpenSSL (the stream counterpart of
// dtls/psk_identity.hpp): TLS 1.3 from the first identity of the ClientHello's pre_shared_key
// extension (RFC 8446 4.2.11), TLS 1.2 from the psk_identity that opens the ClientKeyExchange
// (RFC 4279 2, RFC 5489 2). With it the gateway can learn which key a coaps+tcp handshake needs
// before OpenSSL's PSK callback asks for it (dtls.psk.lookup).
//
// A pure incremental parser over the client's TLS record stream: bytes arrive in any cut (records
// split across reads, several handshake messages per record, one message split over records). No
// I/O, no clock, no OpenSSL. Bounded: it gives up (`none`) on anything malformed, on a handshake
// message it must read that is over max_message, on more than max_scanned bytes, and at the first
// record that is not plaintext handshake (ChangeCipherSpec, alert, application data); OpenSSL then
// decides the handshake alone. Messages it does not need (a client Certificate) are skipped
// without being buffered.
//
// The ClientKeyExchange is taken as PSK-named only when its bytes fit the PSK or ECDHE_PSK layout
// exactly (an ECDHE key share never does); the caller still checks that the handshake is a PSK one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace coapgw::transport {

class TlsPskIdentity {
 public:
  enum class State : std::uint8_t {
    reading,  // no identity yet: feed more bytes
    found,    // identity() holds it; later bytes are ignored
    none,     // there is none to read (or the bytes are not what a PSK client sends): stop feeding
  };
  // Documented bounds (README): the largest ClientHello or ClientKeyExchange read, the bytes looked
  // at in all, and the longest identity taken (OpenSSL's PSK_MAX_IDENTITY_LEN).
  static constexpr std::size_t max_message = 16384;
  static constexpr std::size_t max_scanned = 65536;
  static constexpr std::size_t max_identity = 256;

  // The next bytes from the client, in order. Returns the state after them.
  State feed(std::span<const std::byte> bytes);
  State state() const { return state_; }
  const std::string& identity() const { return identity_; }

 private:
  void on_record_byte_run(std::span<const std::byte> run);
  void on_message(std::uint8_t type, std::span<const std::byte> body);
  void give_up();

  State state_ = State::reading;
  std::size_t scanned_ = 0;
  // Record layer: the header being read, then how much of the record's payload is still to come.
  std::byte record_header_[5]{};
  std::size_t record_header_have_ = 0;
  std::size_t record_left_ = 0;
  bool first_message_ = true;
  // Handshake layer: the header being read, then the body (kept only for the messages read).
  std::byte message_header_[4]{};
  std::size_t message_header_have_ = 0;
  std::size_t message_left_ = 0;
  bool keep_body_ = false;
  std::uint8_t message_type_ = 0;
  std::vector<std::byte> body_;
  std::string identity_;
};

// The identity in a ClientHello body (after the 4-byte handshake header): the first identity of its
// pre_shared_key extension; empty when it has none or is malformed.
std::string client_hello_psk_identity(std::span<const std::byte> body);
// The psk_identity of a TLS 1.2 ClientKeyExchange body laid out as PSK or ECDHE_PSK; empty else.
std::string client_key_exchange_psk_identity(std::span<const std::byte> body);

}  // namespace coapgw::transport
