// coapgw::dtls psk identity on the wire — the psk_identity a DTLS 1.2 client sends in its
// ClientKeyExchange (RFC 4279 2, RFC 5489 2: first in the message for PSK and ECDHE_PSK). Records
// before ChangeCipherSpec are plaintext, so the gateway can learn which key a handshake needs
// before OpenSSL asks for it (dtls.psk.lookup). Pure, bounds-checked, no allocation.
#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace coapgw::dtls {

// The psk_identity of the first unfragmented ClientKeyExchange in an epoch-0 handshake record of
// `datagram` (a view into it); nullopt when there is none.
std::optional<std::string_view> client_key_exchange_identity(std::span<const std::byte> datagram);

}  // namespace coapgw::dtls
