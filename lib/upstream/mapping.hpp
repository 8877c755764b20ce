// RFC 8075 / RFC 7252 §10 mapping between CoAP and HTTP vocabularies:
// Content-Format <-> media type, HTTP status -> CoAP response code, entity-tags both ways,
// freshness (Cache-Control max-age, Retry-After) -> Max-Age, Location -> Location-Path/Query.
//
// Pure functions, no I/O; the HTTP upstream uses them and they are unit-tested
// on their own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace coapgw::upstream {

// Media type for a registered Content-Format, e.g. 50 -> "application/json".
std::optional<std::string_view> content_format_to_media_type(std::uint16_t cf);

// Content-Format for a Content-Type header value. Parameters are ignored,
// except charset for text/plain, which must be absent, utf-8 or us-ascii.
std::optional<std::uint16_t> media_type_to_content_format(std::string_view content_type);

// CoAP code byte for an HTTP status; `method` is the CoAP request method
// ("GET", "FETCH", ...) because 200 means 2.05 for reads and 2.04 otherwise.
std::uint8_t http_status_to_coap(unsigned status, std::string_view method);

// HTTP ETag header -> CoAP ETag value (1 to 8 opaque bytes). W/ is ignored. An opaque-tag of 2 to 16
// lower-case hex digits (what etag_to_http writes) is decoded back to its bytes; any other tag of 1 to 8 bytes
// is taken as is; longer (or empty) tags become the first 8 bytes of their SHA-256, deterministic, so
// a device sees the same ETag for the same representation (but such a tag cannot be sent back: see
// etag_to_http). nullopt for a header that is not an entity-tag.
std::optional<std::vector<std::byte>> http_etag_to_coap(std::string_view header);

// CoAP ETag / If-Match value -> HTTP entity-tag list: "\"<lower hex>\"" and, when every byte is an
// HTTP etagc character, also the bytes themselves quoted, so tags taken as is above round-trip.
std::string etag_to_http(std::span<const std::byte> etag);
// If-Match header for a list of CoAP If-Match values: "*" when one is empty, else every tag's forms.
std::string if_match_to_http(std::span<const std::vector<std::byte>> values);
// If-None-Match header for the ETag options of a conditional GET.
std::string etags_to_if_none_match(std::span<const std::vector<std::byte>> etags);

// Cache-Control -> Max-Age: max-age=N (clamped to 2^32-1); no-store or no-cache -> 0; else nullopt.
std::optional<std::uint32_t> cache_control_max_age(std::string_view header);
// Retry-After in delta-seconds -> Max-Age; an HTTP-date (or junk) -> nullopt.
std::optional<std::uint32_t> retry_after_seconds(std::string_view header);

// Location (absolute URL or absolute path) -> Location-Path segments and Location-Query parts,
// percent-decoded. `base_path` (the upstream URL's path, e.g. "/v1") is removed when the location lies
// under it. nullopt for a location we cannot express: another scheme-relative or relative reference,
// a dot-segment, a part over 255 bytes, or more than max_location_options parts.
struct LocationOptions {
  std::vector<std::string> path;
  std::vector<std::string> query;
};
inline constexpr std::size_t max_location_options = 8;
std::optional<LocationOptions> location_to_options(std::string_view location, std::string_view base_path);

}  // namespace coapgw::upstream
