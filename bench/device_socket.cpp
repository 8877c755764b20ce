// coapgw-bench device sockets — slot -> source address mapping and socket setup (see device_socket.hpp).
#include "device_socket.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include "options.hpp"

namespace coapgw::bench {

std::optional<std::uint32_t> parse_ipv4(const std::string& text) {
  in_addr address{};
  if (inet_pton(AF_INET, text.c_str(), &address) != 1) return std::nullopt;
  return ntohl(address.s_addr);
}

std::optional<sockaddr_in> parse_ipv4_endpoint(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  const auto host = parse_ipv4(text.substr(0, colon));
  unsigned port = 0;
  const auto* first = text.data() + colon + 1;
  const auto* last = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(first, last, port);
  if (!host || ec != std::errc{} || ptr != last || port == 0 || port > 65535) return std::nullopt;
  sockaddr_in out{};
  out.sin_family = AF_INET;
  out.sin_addr.s_addr = htonl(*host);
  out.sin_port = htons(static_cast<std::uint16_t>(port));
  return out;
}

int open_device_socket(std::uint32_t slot, const SourceSpace& space, const sockaddr_in& server,
                       bool ephemeral_port) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl(space.first_address + slot / devices_per_address);
  local.sin_port =
      ephemeral_port ? 0 : htons(static_cast<std::uint16_t>(space.port_base + slot % devices_per_address));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    local.sin_port = 0;
    if (bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
      const int saved = errno;
      close(fd);
      errno = saved;
      return -1;
    }
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) {
    const int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

}  // namespace coapgw::bench
