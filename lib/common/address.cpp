#include "common/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <charconv>
#include <cstring>

namespace coapgw {

Address Address::v4(std::array<std::uint8_t, 4> ip, std::uint16_t port) {
  Address a;
  a.ip_[10] = 0xff;
  a.ip_[11] = 0xff;
  std::memcpy(a.ip_.data() + 12, ip.data(), 4);
  a.port_ = port;
  a.family_ = Family::v4;
  return a;
}

Address Address::v6(const std::array<std::uint8_t, 16>& ip, std::uint16_t port,
                    std::uint32_t scope_id) {
  Address a;
  a.ip_ = ip;
  a.port_ = port;
  a.scope_id_ = scope_id;
  a.family_ = Family::v6;
  return a;
}

namespace {
std::optional<std::uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  unsigned value = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc{} || p != s.data() + s.size() || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}
}  // namespace

std::optional<Address> Address::parse(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    std::string host(text.substr(1, close - 1));
    std::uint32_t scope = 0;
    if (auto pct = host.find('%'); pct != std::string::npos) {
      auto scope_text = std::string_view(host).substr(pct + 1);
      auto [p, ec] = std::from_chars(scope_text.data(), scope_text.data() + scope_text.size(), scope);
      if (ec != std::errc{} || p != scope_text.data() + scope_text.size()) return std::nullopt;
      host.resize(pct);
    }
    auto port = parse_port(text.substr(close + 2));
    if (!port) return std::nullopt;
    std::array<std::uint8_t, 16> ip{};
    if (inet_pton(AF_INET6, host.c_str(), ip.data()) != 1) return std::nullopt;
    return v6(ip, *port, scope);
  }
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string host(text.substr(0, colon));
  auto port = parse_port(text.substr(colon + 1));
  if (!port) return std::nullopt;
  std::array<std::uint8_t, 4> ip{};
  if (inet_pton(AF_INET, host.c_str(), ip.data()) != 1) return std::nullopt;
  return v4(ip, *port);
}

Address Address::from_sockaddr(const sockaddr* sa) {
  if (sa == nullptr) return {};
  if (sa->sa_family == AF_INET) {
    sockaddr_in sin;
    std::memcpy(&sin, sa, sizeof sin);
    std::array<std::uint8_t, 4> ip;
    std::memcpy(ip.data(), &sin.sin_addr, 4);
    return v4(ip, ntohs(sin.sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, sa, sizeof sin6);
    std::array<std::uint8_t, 16> ip;
    std::memcpy(ip.data(), &sin6.sin6_addr, 16);
    // A v4-mapped peer on a dual-stack socket is an IPv4 peer.
    if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
      std::array<std::uint8_t, 4> v4ip;
      std::memcpy(v4ip.data(), ip.data() + 12, 4);
      return v4(v4ip, ntohs(sin6.sin6_port));
    }
    return v6(ip, ntohs(sin6.sin6_port), sin6.sin6_scope_id);
  }
  return {};
}

std::size_t Address::to_sockaddr(void* out, std::size_t capacity) const {
  if (family_ == Family::v4 && capacity >= sizeof(sockaddr_in)) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port_);
    std::memcpy(&sin.sin_addr, ip_.data() + 12, 4);
    std::memcpy(out, &sin, sizeof sin);
    return sizeof sin;
  }
  if (family_ == Family::v6 && capacity >= sizeof(sockaddr_in6)) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port_);
    sin6.sin6_scope_id = scope_id_;
    std::memcpy(&sin6.sin6_addr, ip_.data(), 16);
    std::memcpy(out, &sin6, sizeof sin6);
    return sizeof sin6;
  }
  return 0;
}

bool Address::is_unspecified() const {
  for (std::size_t i = 0; i < ip_size(); ++i)
    if (ip_bytes()[i] != 0) return false;
  return family_ != Family::none;
}

bool Address::is_multicast() const {
  if (family_ == Family::v4) return (ip_[12] & 0xf0) == 0xe0;
  if (family_ == Family::v6) return ip_[0] == 0xff;
  return false;
}

std::string Address::ip_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family_ == Family::v4) inet_ntop(AF_INET, ip_.data() + 12, buf, sizeof buf);
  else if (family_ == Family::v6) inet_ntop(AF_INET6, ip_.data(), buf, sizeof buf);
  else return "";
  return buf;
}

std::string Address::to_string() const {
  // Built with append(): GCC 12 at -O3 reports a false -Wrestrict on operator+ chains here.
  std::string s;
  if (family_ == Family::none) return s;
  s.reserve(56);
  if (family_ == Family::v6) s.push_back('[');
  s.append(ip_string());
  if (family_ == Family::v6) {
    if (scope_id_ != 0) {
      s.push_back('%');
      s.append(std::to_string(scope_id_));
    }
    s.push_back(']');
  }
  s.push_back(':');
  s.append(std::to_string(port_));
  return s;
}

std::size_t Address::hash() const {
  // FNV-1a over the bytes that make up the key; cheap and good enough for
  // peer addresses, which the kernel already spreads across workers.
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&h](std::uint8_t b) { h = (h ^ b) * 1099511628211ull; };
  for (auto b : ip_) mix(b);
  mix(static_cast<std::uint8_t>(port_ >> 8));
  mix(static_cast<std::uint8_t>(port_));
  mix(static_cast<std::uint8_t>(family_));
  return static_cast<std::size_t>(h ^ (h >> 29));
}

}  // namespace coapgw
