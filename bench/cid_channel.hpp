// coapgw-bench CID channel — a device's DTLS session on coapgw's own engine in the client role
// (dtls::Engine from dtls::ClientContext), which offers the RFC 9146 connection_id extension:
// OpenSSL's client has no Connection IDs. The engine does no I/O; this class moves its datagrams
// over the device's connected, non-blocking socket, and rebind() swaps that socket for one from a
// new source port while the session goes on (a NAT rebinding, --rebind).
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "dtls_channel.hpp"

namespace coapgw::dtls {
class Engine;
struct Output;
}  // namespace coapgw::dtls

namespace coapgw::bench {

class CidChannel final : public SecureChannel {
 public:
  static std::unique_ptr<SecureChannel> start(dtls::ClientContext& context, int fd, const std::string& server);
  ~CidChannel() override;

  HandshakeStatus continue_handshake() override;
  bool send(std::span<const std::byte> datagram) override;
  ReceiveResult receive(std::span<std::byte> buffer) override;
  void on_timer() override;
  void close() override;
  bool rebind(int fd) override;
  std::uint64_t lost() const override;
  std::string connection_id() const override;

 private:
  CidChannel(int fd, std::unique_ptr<dtls::Engine> engine);
  // Sends what the engine wrote and keeps its plaintexts; false when the session ended.
  bool flush(dtls::Output& out);
  std::unique_ptr<dtls::Engine> engine_;
  int fd_;
  std::uint64_t send_errors_ = 0;
  std::deque<std::vector<std::byte>> plaintexts_;
};

}  // namespace coapgw::bench
