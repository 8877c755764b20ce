// coapgw::net — UDP endpoints for the workers: one SO_REUSEPORT socket per worker and listen address,
// batched receive (recvmmsg) and send (sendmmsg), and IP_PKTINFO / IPV6_RECVPKTINFO so a reply leaves
// from the address the request came to and sessions learn the interface index.
//
// Plain POSIX, no Boost.Asio: the worker watches the descriptor for readability with its io_context
// and drains it here until the kernel has nothing more.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/address.hpp"

namespace coapgw::net {

struct ReceivedDatagram {
  Address peer;
  Address local;      // the address the datagram was sent to (from PKTINFO), port = socket's port
  int ifindex = -1;   // interface it came in on, -1 if unknown
  bool truncated = false;
  std::span<const std::byte> data;
};

class UdpSocket {
 public:
  // Binds `address` with SO_REUSEPORT (so every worker can bind the same address), non-blocking, with
  // packet-info reception on. IPv6 sockets are v6-only (IPv4 is bound separately). nullptr + error
  // on failure ("address in use" etc.).
  static std::unique_ptr<UdpSocket> open(const Address& address, std::string* error);
  // SO_REUSEPORT lets any process of the same user join a port, so a second gateway would silently
  // share the first one's traffic. Before the workers bind, this binds the address once without
  // SO_REUSEPORT: it fails with "address in use" if anyone holds it. Returns the address with port 0
  // resolved to the port it got, or nullopt + error.
  static std::optional<Address> probe_exclusive(const Address& address, std::string* error);
  ~UdpSocket();
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  int fd() const { return fd_; }
  const Address& bound_address() const { return bound_; }  // port resolved when bound to 0
  bool wildcard() const { return wildcard_; }
  std::uint64_t send_errors() const { return send_errors_; }

 private:
  UdpSocket(int fd, Address bound, bool wildcard) : fd_(fd), bound_(bound), wildcard_(wildcard) {}
  int fd_;
  Address bound_;
  bool wildcard_;
  std::uint64_t send_errors_ = 0;
  friend class SendBatch;
};

// A reusable batch of receive buffers for recvmmsg.
class ReceiveBatch {
 public:
  static constexpr std::size_t slots = 32;
  static constexpr std::size_t slot_bytes = 4096;
  ReceiveBatch();
  ~ReceiveBatch();
  // One recvmmsg call; returns the datagrams received (possibly none: the socket is drained).
  std::span<const ReceivedDatagram> receive(const UdpSocket& socket);
  // errno of the last failed call, 0 if none.
  int last_error() const { return last_error_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<ReceivedDatagram> out_;
  std::size_t filled_ = 0;  // slots the last call filled (their lengths are reset before the next)
  int last_error_ = 0;
};

// Outgoing datagrams collected while a receive batch is processed, sent with sendmmsg in one call.
class SendBatch {
 public:
  static constexpr std::size_t max_batch = 64;
  SendBatch();
  ~SendBatch();
  // `source` is used as the source address when the socket is bound to a wildcard address.
  void add(UdpSocket& socket, const Address& peer, const Address& source, std::span<const std::byte> data);
  // Sends everything queued (also done automatically when the batch is full or the socket changes).
  void flush();
  std::size_t pending() const;
  std::uint64_t sent() const { return sent_; }
  std::uint64_t dropped() const { return dropped_; }  // kernel refused (buffer full, unreachable)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint64_t sent_ = 0;
  std::uint64_t dropped_ = 0;
};

}  // namespace coapgw::net
