// coapgw-bench DTLS channel — an OpenSSL DTLS 1.2 PSK client on a device's connected UDP socket
// (or, with --cid, coapgw's own engine in the client role: cid_channel.hpp).
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
#include <utility>

#include "channel_result.hpp"

struct ssl_st;
struct ssl_ctx_st;

namespace coapgw::dtls {
class ClientContext;
}

namespace coapgw::bench {

enum class HandshakeStatus : unsigned char { done, in_progress, failed };

// What the load loop drives: a device's secure session over its socket.
class SecureChannel {
 public:
  virtual ~SecureChannel() = default;
  virtual HandshakeStatus continue_handshake() = 0;
  virtual bool send(std::span<const std::byte> datagram) = 0;  // one record, one datagram
  virtual ReceiveResult receive(std::span<std::byte> buffer) = 0;
  virtual void on_timer() = 0;  // retransmits a lost handshake flight when its timer has run out
  virtual void close() = 0;     // sends close_notify without waiting for the peer's
  // Goes on from another connected socket (a NAT rebinding: new source port); false when the
  // session cannot follow (no Connection ID).
  virtual bool rebind(int /*fd*/) { return false; }
  // Records the device could not use (did not authenticate) plus datagrams the socket refused to
  // send, since the channel began: what a device that stops hearing its server looks at.
  virtual std::uint64_t lost() const { return 0; }
  // The Connection ID the device's records carry (the server's, hex), "" without one.
  virtual std::string connection_id() const { return {}; }
};

// One per process: the SSL_CTX with the PSK credentials and cipher list.
class DtlsClientContext {
 public:
  // nullptr (and `error` set) when OpenSSL refuses the cipher list.
  // cid: sessions run on coapgw's engine with an RFC 9146 Connection ID instead of OpenSSL's client.
  static std::unique_ptr<DtlsClientContext> create(const std::string& cipher,
                                                   const std::string& identity,
                                                   const std::string& key, bool cid, std::string& error,
                                                   double handshake_timeout_s = 30.0);
  ~DtlsClientContext();
  DtlsClientContext(const DtlsClientContext&) = delete;
  DtlsClientContext& operator=(const DtlsClientContext&) = delete;

  ssl_ctx_st* native() const { return ctx_; }
  const std::string& identity() const { return identity_; }
  const std::string& key() const { return key_; }
  // --identities: the next handshake's identity and key ("<identity>-<n>", "<key>-<n>").
  void set_identities(std::uint32_t count) { identities_ = count; }
  std::pair<std::string, std::string> next_credentials();
  dtls::ClientContext* engine_context() const { return engine_context_.get(); }

 private:
  DtlsClientContext() = default;
  std::unique_ptr<dtls::ClientContext> engine_context_;
  ssl_ctx_st* ctx_ = nullptr;
  std::string identity_;
  std::string key_;
  std::uint32_t identities_ = 0;
  std::uint32_t next_identity_ = 0;
};

class DtlsChannel final : public SecureChannel {
 public:
  // Sends the first ClientHello (through the engine when the context has one). nullptr when the
  // session cannot be set up.
  // `identity`: this device's PSK identity instead of the context's ("" = the context's; not with a
  // CID context).
  static std::unique_ptr<SecureChannel> start(DtlsClientContext& context, int fd, const std::string& server,
                                              std::string identity = {});
  ~DtlsChannel() override;
  DtlsChannel(const DtlsChannel&) = delete;
  DtlsChannel& operator=(const DtlsChannel&) = delete;

  HandshakeStatus continue_handshake() override;
  bool send(std::span<const std::byte> datagram) override;
  ReceiveResult receive(std::span<std::byte> buffer) override;
  void on_timer() override;
  void close() override;

 private:
  explicit DtlsChannel(ssl_st* ssl) : ssl_(ssl) {}
  ssl_st* ssl_;
  std::string identity_;  // the PSK callback reads it through SSL_get_app_data
};

}  // namespace coapgw::bench
