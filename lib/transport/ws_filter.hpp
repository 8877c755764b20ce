// coapgw::transport::WsFilter — the server side of one WebSocket (RFC 6455) carrying CoAP (RFC 8323
// §4): the HTTP/1.1 upgrade on /.well-known/coap with the `coap` subprotocol (the request parsed by
// Boost.Beast's HTTP parser), then binary messages in and out, Ping answered with Pong, Close
// answered with Close. Bytes in, whole messages and bytes to send out: no sockets and no clock, so it
// composes with TlsFilter in the same stream driver (coaps+ws = TLS, then this) and is fuzzable.
// Bounds: the upgrade request (8 KiB), one message (max_message_size, fragments included); text
// messages, unmasked client frames and protocol errors fail the connection with a Close.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace coapgw::transport {

class WsFilter {
 public:
  enum class Status : std::uint8_t { upgrading, open, failed, closed };
  static constexpr std::size_t max_upgrade_request = 8192;

  explicit WsFilter(std::size_t max_message_size, std::string path = "/.well-known/coap");
  ~WsFilter();
  WsFilter(const WsFilter&) = delete;
  WsFilter& operator=(const WsFilter&) = delete;

  // Bytes from the peer: the upgrade answer, Pongs and Close go to `out`; each whole binary
  // message is appended to `messages`. Returns the status after them.
  Status on_bytes(std::span<const std::byte> in, std::vector<std::vector<std::byte>>& messages,
                  std::vector<std::byte>& out);
  // One binary message to the peer (a single unmasked frame) into `out`; false when not open.
  bool write(std::span<const std::byte> message, std::vector<std::byte>& out);
  // A Close frame (once) into `out`.
  void close(std::uint16_t code, std::vector<std::byte>& out);

  Status status() const { return status_; }
  const std::string& error() const { return error_; }

 private:
  void upgrade(std::vector<std::byte>& out);
  void frames(std::vector<std::vector<std::byte>>& messages, std::vector<std::byte>& out);
  void fail(std::uint16_t code, std::string why, std::vector<std::byte>& out);
  void frame(std::uint8_t opcode, std::span<const std::byte> payload, std::vector<std::byte>& out);

  struct Upgrade;
  std::unique_ptr<Upgrade> upgrade_;  // the HTTP parser, until the upgrade is done
  std::size_t max_message_size_;
  std::string path_;
  Status status_ = Status::upgrading;
  std::size_t upgrade_bytes_ = 0;     // of the upgrade request, consumed by the parser so far
  std::vector<std::byte> buffer_;     // bytes of a partial frame (or of the upgrade request)
  std::vector<std::byte> message_;    // fragments of a message so far
  bool in_message_ = false;
  bool close_sent_ = false;
  std::string error_;
};

}  // namespace coapgw::transport
