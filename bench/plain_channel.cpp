// coapgw-bench plain channel — send/recv on the connected socket (see plain_channel.hpp).
#include "plain_channel.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace coapgw::bench {

bool PlainChannel::send(std::span<const std::byte> datagram) {
  return ::send(fd_, datagram.data(), datagram.size(), 0) == static_cast<ssize_t>(datagram.size());
}

ReceiveResult PlainChannel::receive(std::span<std::byte> buffer) {
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n >= 0) return {ReceiveStatus::datagram, static_cast<std::size_t>(n)};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {ReceiveStatus::would_block, 0};
    return {ReceiveStatus::error, 0};
  }
}

}  // namespace coapgw::bench
