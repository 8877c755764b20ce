// coapgw-bench channel results — what a receive on either transport can come back with.
#pragma once

#include <cstddef>
#include <cstdint>

namespace coapgw::bench {

enum class ReceiveStatus : std::uint8_t {
  datagram,     // `size` bytes of CoAP are in the buffer
  would_block,  // nothing more to read now
  closed,       // the peer ended the session (DTLS close_notify)
  error,        // socket error (e.g. ICMP port unreachable) or fatal DTLS alert
};

struct ReceiveResult {
  ReceiveStatus status = ReceiveStatus::would_block;
  std::size_t size = 0;
};

}  // namespace coapgw::bench
