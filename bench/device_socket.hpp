// coapgw-bench device sockets — one UDP socket per simulated device, at its own source address.
//
// A device slot maps to a fixed source address and port: address source_base + slot / 50,000,
// port source_port_base + slot % 50,000. That spreads devices past the ~64k ports of one
// address, keeps processes of one run from colliding (they own disjoint slots), and lets a
// handshake run rotate through slots without reusing a port the server still remembers.
// The socket is connected to the server, non-blocking, and close-on-exec.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string>

namespace coapgw::bench {

struct SourceSpace {
  std::uint32_t first_address = 0;  // host byte order
  std::uint16_t port_base = 10000;
};

std::optional<sockaddr_in> parse_ipv4_endpoint(const std::string& text);  // "a.b.c.d:port"
std::optional<std::uint32_t> parse_ipv4(const std::string& text);         // host byte order

// Returns the fd, or -1 with errno set. A taken port falls back to an ephemeral one on the same
// address, so a busy port costs nothing but determinism.
// ephemeral_port: the slot's address with a port the kernel picks (a device that rebinds, --rebind).
int open_device_socket(std::uint32_t slot, const SourceSpace& space, const sockaddr_in& server,
                       bool ephemeral_port = false);

}  // namespace coapgw::bench
