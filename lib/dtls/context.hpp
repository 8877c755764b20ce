// coapgw::dtls::Context — what the server and the client role share: the SSL_CTX set up the same
// way (DTLS 1.2 only, no tickets unless a role turns them on, no renegotiation, no compression, one record per datagram), the
// one AEAD-only cipher policy, the handshake timing (mtu, handshake timeout, first retransmission
// timeout) and the per-thread scratch every Engine of this context uses (SSL_read buffer, AEAD
// contexts of the lean record layer). ServerContext and ClientContext derive from it and add their
// credentials; an Engine keeps a pointer to the Context that made it, which must outlive it.
// Not thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

struct ssl_ctx_st;

namespace coapgw::dtls {
class Engine;
namespace detail {
class RecordCrypto;
class SslRecordLayer;
struct Callbacks;
}  // namespace detail

class Context {
 public:
  enum class Role : unsigned char { server, client };

  virtual ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Role role() const { return role_; }
  ssl_ctx_st* native_handle() { return ctx_; }
  std::size_t mtu() const { return mtu_; }
  std::chrono::milliseconds handshake_timeout() const { return handshake_timeout_; }
  std::chrono::milliseconds retransmit_initial() const { return retransmit_initial_; }
  // Largest plaintext of one record: in the server role one that fits one datagram at this mtu,
  // in the client role the DTLS maximum (16384).
  std::size_t max_plaintext() const;

 protected:
  explicit Context(Role role);
  // "" when mtu and timeouts are in range, else the error init() would report.
  static std::string check_timing(std::size_t mtu, std::chrono::milliseconds handshake_timeout,
                                  std::chrono::milliseconds retransmit_initial);
  // Builds ctx_ for the role with `ciphers` (every suite must be one the lean layer protects),
  // the read buffer and the AEAD contexts. "" on success, else why not ("dtls: ..." text).
  std::string init(std::size_t mtu, std::chrono::milliseconds handshake_timeout,
                   std::chrono::milliseconds retransmit_initial, const std::string& ciphers);

 protected:
  friend class Engine;
  friend struct detail::Callbacks;
  friend class detail::SslRecordLayer;

  static constexpr std::size_t read_buffer_size = 16384;  // SSL3_RT_MAX_PLAIN_LENGTH

  Role role_;
  std::size_t mtu_ = 1280;
  std::chrono::milliseconds handshake_timeout_{30000};
  std::chrono::milliseconds retransmit_initial_{1000};
  ssl_ctx_st* ctx_ = nullptr;
  // Scratch for SSL_read, shared by all engines of this context.
  std::unique_ptr<std::byte[]> read_buffer_;
  // AEAD contexts and plaintext scratch of every lean session of this context.
  std::unique_ptr<detail::RecordCrypto> crypto_;
};

}  // namespace coapgw::dtls
