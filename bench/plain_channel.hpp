// coapgw-bench plain channel — CoAP over a device's connected UDP socket, no security.
//
// The counterpart of DtlsChannel with the same send/receive shape, so the load loop treats
// both transports alike.
#pragma once

#include <cstddef>
#include <span>

#include "channel_result.hpp"

namespace coapgw::bench {

class PlainChannel {
 public:
  explicit PlainChannel(int fd) : fd_(fd) {}
  bool send(std::span<const std::byte> datagram);
  ReceiveResult receive(std::span<std::byte> buffer);

 private:
  int fd_;
};

}  // namespace coapgw::bench
