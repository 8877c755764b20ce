// RFC 8075 / RFC 7252 §10 mapping between CoAP and HTTP vocabularies:
// Content-Format <-> media type, HTTP status -> CoAP response code.
//
// Pure functions, no I/O; the HTTP upstream uses them and they are unit-tested
// on their own.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace coapgw::gateway {

// Media type for a registered Content-Format, e.g. 50 -> "application/json".
std::optional<std::string_view> content_format_to_media_type(std::uint16_t cf);

// Content-Format for a Content-Type header value. Parameters are ignored,
// except charset for text/plain, which must be absent, utf-8 or us-ascii.
std::optional<std::uint16_t> media_type_to_content_format(std::string_view content_type);

// CoAP code byte for an HTTP status; `method` is the CoAP request method
// ("GET", "FETCH", ...) because 200 means 2.05 for reads and 2.04 otherwise.
std::uint8_t http_status_to_coap(unsigned status, std::string_view method);

}  // namespace coapgw::gateway
