// coapgw::coap options — the option registry and the checks RFC 7252 §5.4 asks of a server.
//
// Owns what an option number means (name, value format, repeatability, length bounds) for every
// option of RFC 7252, 7641, 7959, 7967 and 9175, the critical/unsafe/no-cache-key bits, and the
// request URI rebuilt from Uri-Path/Uri-Query. Pure functions over a parsed MessageView.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "coap/message.hpp"

namespace coapgw::coap {

namespace option {
inline constexpr std::uint16_t if_match = 1, uri_host = 3, etag = 4, if_none_match = 5,
                               observe = 6, uri_port = 7, location_path = 8, uri_path = 11,
                               content_format = 12, max_age = 14, uri_query = 15, accept = 17,
                               location_query = 20, block2 = 23, block1 = 27, size2 = 28,
                               proxy_uri = 35, proxy_scheme = 39, size1 = 60, echo = 252,
                               no_response = 258, request_tag = 292;
}  // namespace option

enum class OptionFormat : std::uint8_t { empty, opaque, uint, string };

struct OptionInfo {
  std::uint16_t number;
  std::string_view name;
  OptionFormat format;
  bool repeatable;
  std::uint16_t min_length;
  std::uint16_t max_length;
};

// Every option of RFC 7252, 7641, 7959, 7967, 9175; nullptr for any other number.
const OptionInfo* find_option(std::uint16_t number);
// The whole registry, sorted by number (for docs, tests and the admin API).
std::span<const OptionInfo> option_registry();

constexpr bool is_critical(std::uint16_t n) { return n & 1; }
constexpr bool is_unsafe(std::uint16_t n) { return n & 2; }
constexpr bool is_no_cache_key(std::uint16_t n) { return (n & 0x1e) == 0x1c; }

std::uint32_t decode_uint(std::span<const std::byte> value);  // big-endian, up to 4 bytes (longer: low 4)

// RFC 7252 5.4.1/5.4.3/5.4.5: the number of the first CRITICAL option that is unknown, has a length
// outside its registered bounds, or repeats while not repeatable; nullopt when the request is fine.
// Elective problems are ignored (the caller ignores those options).
std::optional<std::uint16_t> first_bad_critical_option(const MessageView& message);

// "/a/b" ("/" when there is no Uri-Path); each segment percent-encoded per RFC 3986 where needed.
std::string uri_path(const MessageView& message);
// "a=1&b=2" ("" when none); '&', '#' and non-query characters inside an option are percent-encoded.
std::string uri_query(const MessageView& message);
// RFC 3986 §5.2.4: a Uri-Path option that is, or percent-decodes to, "." or "..", or that holds such a
// part between '/' or '\\' (url::is_dot_segment_risk). The gateway refuses these with 4.00 rather
// than resolving them, so no request can climb out of its route on any upstream.
bool has_unsafe_path_segment(const MessageView& message);

}  // namespace coapgw::coap
