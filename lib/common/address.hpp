// coapgw::Address — a compact IPv4/IPv6 address and port.
//
// Sessions are keyed by addresses and a gateway holds hundreds of thousands of
// them, so this is 20 bytes instead of a 128-byte sockaddr_storage. IPv4 is
// stored as an IPv4-mapped IPv6 address internally only for hashing; family()
// says what it really is. No socket headers leak from here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

struct sockaddr;

namespace coapgw {

class Address {
 public:
  enum class Family : std::uint8_t { none = 0, v4 = 4, v6 = 6 };

  Address() = default;
  static Address v4(std::array<std::uint8_t, 4> ip, std::uint16_t port);
  static Address v6(const std::array<std::uint8_t, 16>& ip, std::uint16_t port,
                    std::uint32_t scope_id = 0);
  // Parses "1.2.3.4:5683", "[::1]:5683" and "[fe80::1%2]:5683".
  static std::optional<Address> parse(std::string_view text);
  // From a sockaddr_in / sockaddr_in6; returns a none-family address otherwise.
  static Address from_sockaddr(const sockaddr* sa);
  // Writes a sockaddr_in or sockaddr_in6 into `out` (at least 28 bytes) and
  // returns its length; 0 for a none-family address.
  std::size_t to_sockaddr(void* out, std::size_t capacity) const;

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::v4; }
  bool is_v6() const { return family_ == Family::v6; }
  bool is_unspecified() const;  // 0.0.0.0 or ::
  bool is_multicast() const;
  std::uint16_t port() const { return port_; }
  void set_port(std::uint16_t port) { port_ = port; }
  std::uint32_t scope_id() const { return scope_id_; }
  // 4 bytes for IPv4, 16 for IPv6.
  const std::uint8_t* ip_bytes() const { return family_ == Family::v4 ? ip_.data() + 12 : ip_.data(); }
  std::size_t ip_size() const { return family_ == Family::v4 ? 4 : 16; }

  std::string ip_string() const;   // "1.2.3.4" or "::1"
  std::string to_string() const;   // "1.2.3.4:5683" or "[::1]:5683"

  std::size_t hash() const;
  friend bool operator==(const Address& a, const Address& b) {
    return a.family_ == b.family_ && a.port_ == b.port_ && a.ip_ == b.ip_ &&
           a.scope_id_ == b.scope_id_;
  }

 private:
  std::array<std::uint8_t, 16> ip_{};
  std::uint32_t scope_id_ = 0;
  std::uint16_t port_ = 0;
  Family family_ = Family::none;
};

struct AddressHash {
  std::size_t operator()(const Address& a) const { return a.hash(); }
};

}  // namespace coapgw
