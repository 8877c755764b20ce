// coapgw::gateway::DtlsClient — the DTLS 1.2 PSK client under a coaps:// upstream.
//
// It owns one OpenSSL SSL_CTX (per upstream) and, per connection, one client SSL object on memory
// BIOs. It does no I/O and keeps no timers: the caller feeds it the datagrams its socket received,
// sends the datagrams it hands back, and calls on_retransmit_timer() when retransmit_in() has elapsed
// (DTLSv1_get_timeout / DTLSv1_handle_timeout). One CoAP message goes in one record. OpenSSL headers
// stay in dtls_client.cpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/secret.hpp"

namespace coapgw::gateway {

struct DtlsClientSettings {
  std::string psk_identity;
  SecretString psk_key;       // raw key bytes, wiped when let go
  std::size_t link_mtu = 1280;  // DTLS_set_link_mtu; outgoing datagrams stay within it
};

class DtlsClient {
 public:
  enum class State {
    idle,         // no connection yet
    handshake,    // connect() called, not finished
    established,  // application data flows
    failed,       // handshake failed or fatal alert: connect() again to retry
    closed,       // close_notify from the peer, close() or abandon(): connect() again to retry
  };

  // Throws std::runtime_error at start-up when the SSL_CTX cannot be built or the PSK is unusable
  // (empty key, identity or key longer than OpenSSL accepts).
  explicit DtlsClient(DtlsClientSettings settings);
  ~DtlsClient();
  DtlsClient(const DtlsClient&) = delete;
  DtlsClient& operator=(const DtlsClient&) = delete;

  // Starts a fresh handshake (a new SSL object; any previous one is dropped silently). The
  // ClientHello is then in take_datagrams(). Returns false (state failed) if OpenSSL refuses.
  bool connect();

  // One datagram from the peer. Decrypted application records are appended to `messages`, one
  // element per record. The state may change (handshake done, failed, peer closed).
  void receive(std::span<const std::byte> datagram, std::vector<std::vector<std::byte>>& messages);

  // Encrypts one message as one record (established only). False when not established or OpenSSL
  // refuses (then the state is failed).
  bool send(std::span<const std::byte> message);

  // Datagrams to put on the wire, in order, each at most link_mtu bytes (records are never split).
  std::vector<std::vector<std::byte>> take_datagrams();

  // When OpenSSL wants on_retransmit_timer() called (handshake flights); nullopt = no timer running.
  std::optional<std::chrono::milliseconds> retransmit_in() const;
  // Retransmits the last flight if due; too many retransmissions fail the handshake.
  void on_retransmit_timer();

  // Sends close_notify (in take_datagrams()) when established; state closed.
  void close();
  // Forgets the connection without a word to the peer (peer unreachable); state closed.
  void abandon();

  State state() const { return state_; }
  // Why the last handshake or connection failed, for logs ("" if it did not).
  const std::string& error() const { return error_; }
  // SSL* of the current connection, nullptr if none (coap_session_get_tls()).
  void* native_handle() const;
  const DtlsClientSettings& settings() const { return settings_; }

 private:
  struct Impl;
  void fail(std::string why);
  void drain_app_data(std::vector<std::vector<std::byte>>& messages);

  DtlsClientSettings settings_;
  std::unique_ptr<Impl> impl_;
  State state_ = State::idle;
  std::string error_;
};

}  // namespace coapgw::gateway
