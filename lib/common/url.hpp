// coapgw::url — the one place that percent-encodes and decodes URI parts (RFC 3986 §2.1, §3.3, §3.4)
// and the one parser of upstream URLs ("scheme://host[:port][/path]", RFC 3986 §3.1-§3.3).
//
// Every URL or URI reference the gateway builds goes through these: the Uri-Path/Uri-Query of a
// request joined into a path and query (coap/option.cpp), the HTTP request target (http_upstream),
// the Uri-Path/Uri-Query options sent to a CoAP upstream (coap_upstream), Location headers turned
// into Location-Path/Location-Query, link-format targets and header values. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coapgw::url {

// One path segment: everything but RFC 3986 pchar is encoded, so '/', '?', '#' and '%' inside the
// segment can never act as separators or escapes.
std::string percent_encode_segment(std::string_view raw);
void append_segment(std::string& out, std::string_view raw);

// One query part (one Uri-Query option): as a segment, but '/' and '?' may stay (RFC 3986 §3.4);
// '&' (the part separator), '#' and '%' are encoded.
std::string percent_encode_query(std::string_view raw);
void append_query(std::string& out, std::string_view raw);

// An already-encoded path or query: only bytes that may not appear in a URI at all (controls,
// space, non-ASCII, '"', '<', '>', '\', '^', '`', '{', '|', '}') are encoded; '%' and every
// delimiter are kept. The HTTP upstream's safety net for the request target.
std::string percent_encode_target(std::string_view text);

// Controls (0x00-0x1f, 0x7f) only: a value that must stay readable and fit one header line.
std::string percent_encode_controls(std::string_view text);

// Link-format target (RFC 6690 "<" URI-Reference ">"): controls, space, non-ASCII, '<', '>', '"'.
std::string percent_encode_link_target(std::string_view text);

// "%XX" -> byte; a '%' not followed by two hex digits is kept literally.
std::string percent_decode(std::string_view text);

// "/a/b%2Fc" -> {"a", "b/c"}; empty segments are skipped, "/" -> {}.
std::vector<std::string> split_path(std::string_view encoded_path);
// "a=1&b=%26" -> {"a=1", "b=&"}; "" -> {}; empty parts are kept ("a&&b" has three).
std::vector<std::string> split_query(std::string_view encoded_query);

// True when a raw (one Uri-Path option) segment could act as a dot-segment (RFC 3986 §3.3, §5.2.4)
// on any server: the segment, or any part of it between '/' or '\', is "." or "..", before or after
// percent-decoding (repeated until nothing changes, so "%252e%252e" counts too).
bool is_dot_segment_risk(std::string_view raw_segment);

// An upstream URL split into its parts (config routes[].upstream: http, https, coap, coaps).
struct ServerUrl {
  std::string scheme;                  // as written before "://": "http", "coaps", ...
  std::string host;                    // "127.0.0.1", "::1" (no brackets), "backend.example"
  bool bracketed = false;              // the host was an IP literal in "[...]"
  std::optional<std::uint16_t> port;   // 1..65535 when given, nullopt when absent
  std::string path;                    // "" or "/..." exactly as written (still percent-encoded)
};

// "scheme://host[:port][/path]"; nullopt when malformed: no "://", an empty scheme or host,
// userinfo ('@'), a query or fragment ('?', '#'), a space or control anywhere, an unclosed or
// trailing-garbage "[...]", a port that is empty, not all digits, longer than 5 digits or not
// 1..65535. The scheme is not checked against a list: callers know which ones they serve.
std::optional<ServerUrl> parse_server_url(std::string_view url);

// The text before "://" ("" when there is none): which kind of URL this is meant to be.
std::string_view scheme_of(std::string_view url);

}  // namespace coapgw::url
