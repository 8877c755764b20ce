// coapgw::server registry answers — what the device registry's HTTP answer to
// GET dtls.psk.lookup.url means (DESIGN.md "Device registry"): 200 with
// {"key": ..., | "key_hex": ..., "tenant": ..., "banned": false} is a device, 404 an unknown
// identity, anything else (another status, a body that is not such an object, a key that is empty,
// too long or not hex) an error that refuses the handshake. Pure (nlohmann-json in the .cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "dtls/registry_cache.hpp"

namespace coapgw::server {

// Documented bounds of an answer (README): the same key bound as dtls.psk.keys.
inline constexpr std::size_t max_registry_key_bytes = 256;
inline constexpr std::size_t max_registry_tenant_bytes = 128;

// `code` is the CoAP code the forwarding client mapped the HTTP status to (200 -> 2.05, 404 -> 4.04).
// nullopt: not a well-formed answer.
std::optional<dtls::RegistryEntry> parse_registry_answer(std::uint8_t code, std::span<const std::byte> body);

}  // namespace coapgw::server
