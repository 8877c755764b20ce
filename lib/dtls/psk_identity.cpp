#include "dtls/psk_identity.hpp"

#include "common/bytes.hpp"
#include "dtls/wire.hpp"

namespace coapgw::dtls {

namespace {

constexpr std::uint8_t client_key_exchange = 16;

}  // namespace

std::optional<std::string_view> client_key_exchange_identity(std::span<const std::byte> datagram) {
  std::span<const std::byte> rest = datagram;
  while (!rest.empty()) {
    auto record = wire::next_record(rest, &rest);
    if (!record) return std::nullopt;
    if (record->type != static_cast<std::uint8_t>(wire::ContentType::handshake) || record->epoch != 0) continue;
    // A record may carry several handshake messages (a flight packed by the client).
    std::span<const std::byte> messages = record->fragment;
    while (messages.size() >= wire::handshake_header_size) {
      const std::byte* h = messages.data();
      const std::uint32_t length = bytes::load_be24(h + 1);
      const std::uint32_t offset = bytes::load_be24(h + 6);
      const std::uint32_t fragment_length = bytes::load_be24(h + 9);
      if (fragment_length > messages.size() - wire::handshake_header_size) return std::nullopt;
      auto body = messages.subspan(wire::handshake_header_size, fragment_length);
      messages = messages.subspan(wire::handshake_header_size + fragment_length);
      if (std::to_integer<std::uint8_t>(h[0]) != client_key_exchange) continue;
      if (offset != 0 || fragment_length != length || body.size() < 2) return std::nullopt;
      const std::uint16_t n = bytes::load_be16(body.data());
      if (n == 0 || n > body.size() - 2) return std::nullopt;
      return std::string_view(reinterpret_cast<const char*>(body.data() + 2), n);
    }
  }
  return std::nullopt;
}

}  // namespace coapgw::dtls
