// coapgw-bench DTLS channel — an OpenSSL DTLS 1.2 PSK client on a device's connected UDP socket.
//
// OpenSSL drives the socket through a datagram BIO, so the handshake (including the
// HelloVerifyRequest cookie round) and record protection need no copying here; the load loop
// only calls continue_handshake()/receive() when epoll says the socket is readable and
// on_timer() for DTLS retransmission. OpenSSL types stay out of this header.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "channel_result.hpp"

struct ssl_st;
struct ssl_ctx_st;

namespace coapgw::bench {

// One per process: the SSL_CTX with the PSK credentials and cipher list.
class DtlsClientContext {
 public:
  // nullptr (and `error` set) when OpenSSL refuses the cipher list.
  static std::unique_ptr<DtlsClientContext> create(const std::string& cipher,
                                                   const std::string& identity,
                                                   const std::string& key, std::string& error);
  ~DtlsClientContext();
  DtlsClientContext(const DtlsClientContext&) = delete;
  DtlsClientContext& operator=(const DtlsClientContext&) = delete;

  ssl_ctx_st* native() const { return ctx_; }
  const std::string& identity() const { return identity_; }
  const std::string& key() const { return key_; }

 private:
  DtlsClientContext() = default;
  ssl_ctx_st* ctx_ = nullptr;
  std::string identity_;
  std::string key_;
};

enum class HandshakeStatus : unsigned char { done, in_progress, failed };

class DtlsChannel {
 public:
  // Sends the first ClientHello. nullptr when OpenSSL cannot set the session up.
  static std::unique_ptr<DtlsChannel> start(DtlsClientContext& context, int fd);
  ~DtlsChannel();
  DtlsChannel(const DtlsChannel&) = delete;
  DtlsChannel& operator=(const DtlsChannel&) = delete;

  HandshakeStatus continue_handshake();
  bool send(std::span<const std::byte> datagram);  // one record, one datagram
  ReceiveResult receive(std::span<std::byte> buffer);
  void on_timer();  // retransmits a lost handshake flight when OpenSSL's timer has run out
  void close();     // sends close_notify without waiting for the peer's

 private:
  explicit DtlsChannel(ssl_st* ssl) : ssl_(ssl) {}
  ssl_st* ssl_;
};

}  // namespace coapgw::bench
