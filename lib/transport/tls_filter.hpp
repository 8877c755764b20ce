// coapgw::transport::TlsFilter — the server side of one TLS 1.2/1.3 connection over memory BIOs:
// ciphertext in, plaintext out; plaintext in, ciphertext out. No sockets and no clock, like the
// DTLS engine: the stream driver (tcp_listener.cpp) moves the bytes and owns the handshake timeout.
// The SSL_CTX (credentials, PSK callbacks, verification) is the caller's; OpenSSL stays in the .cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

struct ssl_ctx_st;
struct ssl_st;

namespace coapgw::transport {

class TlsFilter {
 public:
  enum class Status : std::uint8_t { handshaking, open, failed, closed };

  explicit TlsFilter(ssl_ctx_st* context);
  ~TlsFilter();
  TlsFilter(const TlsFilter&) = delete;
  TlsFilter& operator=(const TlsFilter&) = delete;

  // Bytes from the peer: handshake records are answered into `out`, application data is appended
  // to `plain`. Returns the status after them (failed: the handshake or a record failed; `out` may
  // hold an alert to send; closed: the peer sent close_notify).
  Status on_ciphertext(std::span<const std::byte> in, std::vector<std::byte>& plain, std::vector<std::byte>& out);
  // Application data to the peer, encrypted into `out`; false when the connection is not open.
  bool write(std::span<const std::byte> plain, std::vector<std::byte>& out);
  // close_notify into `out` (once; nothing before the handshake finished).
  void shutdown(std::vector<std::byte>& out);

  Status status() const { return status_; }
  ssl_st* native() const { return ssl_; }
  const std::string& error() const { return error_; }  // why it failed, for the log

 private:
  void drain(std::vector<std::byte>& out);
  void fail();

  ssl_st* ssl_ = nullptr;
  Status status_ = Status::handshaking;
  bool shut_ = false;
  std::string error_;
};

}  // namespace coapgw::transport
