// coapgw::coap message codec — the RFC 7252 §3 wire format, as pure functions over bytes.
//
// This module owns the datagram <-> message mapping and nothing else: no sockets, no timers, no
// Boost, no OpenSSL. parse() fills a fixed-size MessageView whose spans point into the caller's
// datagram, so the receive path never allocates; MessageWriter serializes into a caller buffer.
// Message is the owning form for code that builds or rewrites messages (forwarding), where
// allocation is acceptable. Being pure is what makes the codec fuzzable (tests/fuzz/fuzz_codec.cpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace coapgw::coap {

enum class Type : std::uint8_t { con = 0, non = 1, ack = 2, rst = 3 };
std::string_view type_name(Type type);  // "con","non","ack","rst"

// Codes as class (3 bits) << 5 | detail (5 bits), e.g. content = 2.05 = 0x45.
namespace code {
inline constexpr std::uint8_t empty = 0x00, get = 0x01, post = 0x02, put = 0x03, del = 0x04,
                              fetch = 0x05, patch = 0x06, ipatch = 0x07, created = 0x41,
                              deleted = 0x42, valid = 0x43, changed = 0x44, content = 0x45,
                              continue_ = 0x5f, bad_request = 0x80, unauthorized = 0x81,
                              bad_option = 0x82, forbidden = 0x83, not_found = 0x84,
                              method_not_allowed = 0x85, not_acceptable = 0x86,
                              request_entity_incomplete = 0x88, precondition_failed = 0x8c,
                              request_entity_too_large = 0x8d, unsupported_content_format = 0x8f,
                              internal_server_error = 0xa0, not_implemented = 0xa1,
                              bad_gateway = 0xa2, service_unavailable = 0xa3,
                              gateway_timeout = 0xa4, proxying_not_supported = 0xa5;
}  // namespace code

constexpr std::uint8_t make_code(unsigned cls, unsigned detail) {
  return static_cast<std::uint8_t>(((cls & 0x7u) << 5) | (detail & 0x1fu));
}
constexpr unsigned code_class(std::uint8_t c) { return c >> 5; }     // 4 for 4.04
constexpr unsigned code_detail(std::uint8_t c) { return c & 0x1fu; }  // 4 for 4.04
std::string code_string(std::uint8_t code);        // "2.05", "0.01"
std::string_view method_name(std::uint8_t code);   // "GET".."IPATCH", "" otherwise
std::optional<std::uint8_t> method_code(std::string_view name);  // inverse of method_name; exact case
constexpr bool is_request(std::uint8_t c) { return c >= 0x01 && c <= 0x1f; }  // 0.01..0.31
constexpr bool is_response(std::uint8_t c) { return c >= 0x40 && c <= 0xbf; } // 2.xx..5.xx
constexpr bool is_empty(std::uint8_t c) { return c == code::empty; }

inline constexpr std::size_t max_token_length = 8;
// A bound on options per message keeps MessageView fixed-size (no allocation while parsing);
// real devices send a handful. More -> ParseError::too_many_options.
inline constexpr std::size_t max_options = 64;

struct OptionView {
  std::uint16_t number;
  std::span<const std::byte> value;
};

// Non-owning; every span points into the parsed datagram, which must outlive the view.
struct MessageView {
  Type type = Type::con;
  std::uint8_t code = 0;
  std::uint16_t message_id = 0;
  std::span<const std::byte> token;
  std::array<OptionView, max_options> options{};
  std::size_t option_count = 0;  // in wire order (non-decreasing number)
  std::span<const std::byte> payload;

  std::span<const OptionView> option_list() const { return {options.data(), option_count}; }
  const OptionView* find(std::uint16_t number) const;  // first occurrence or nullptr
};

enum class ParseError : std::uint8_t {
  ok = 0,
  too_short,
  bad_version,
  bad_token_length,
  truncated_token,
  reserved_nibble,
  truncated_option,
  option_number_overflow,
  payload_marker_without_payload,
  too_many_options,
  empty_with_content,
};
std::string_view to_string(ParseError error);  // snake_case reason, used as a metric label

// Parses one datagram. On any error `out` is left in an unspecified (but valid) state.
ParseError parse(std::span<const std::byte> datagram, MessageView& out);

// The options and payload that follow the token, alone: the part every CoAP framing shares (the
// RFC 8323 stream framings put their own header before it, coap/stream_frame.hpp). Sets
// out.options, out.option_count and out.payload; leaves the other fields alone.
ParseError parse_body(std::span<const std::byte> body, MessageView& out);

struct Header {
  Type type;
  std::uint8_t token_length;  // raw TKL nibble, may be > 8 for a malformed message
  std::uint8_t code;
  std::uint16_t message_id;
};
// Just the 4 fixed bytes (version must be 1): lets the server RST a malformed CON.
std::optional<Header> parse_header(std::span<const std::byte> datagram);

// Serializer into a caller buffer. Call header() once, then option()s in non-decreasing number
// order (otherwise option() returns false), then at most one payload(). Any write past the buffer
// sets overflow() and returns false; after that every call fails, and nothing partial is written,
// so bytes() is always a well-formed prefix. Writes that could not be parsed back (token > 8, an
// Empty message with a token/options/payload, calls out of order) are refused with false.
class MessageWriter {
 public:
  explicit MessageWriter(std::span<std::byte> buffer) : buffer_(buffer) {}

  bool header(Type type, std::uint8_t code, std::uint16_t message_id,
              std::span<const std::byte> token);
  // Instead of header(): writes nothing and lets options and payload follow, for a framing that
  // writes its own header and token in front (RFC 8323 streams). `code` only decides whether the
  // message is Empty (then nothing may follow).
  bool body(std::uint8_t code);
  bool option(std::uint16_t number, std::span<const std::byte> value);
  bool option_uint(std::uint16_t number, std::uint32_t value);  // minimal-length encoding (0 -> empty)
  bool option_string(std::uint16_t number, std::string_view value);
  bool payload(std::span<const std::byte> bytes);  // writes 0xFF + bytes only if non-empty

  std::size_t size() const { return size_; }
  bool overflow() const { return overflow_; }
  std::span<const std::byte> bytes() const { return {buffer_.data(), size_}; }

 private:
  enum class Stage : std::uint8_t { start, options, done };
  bool reserve(std::size_t n);

  std::span<std::byte> buffer_;
  std::size_t size_ = 0;
  std::uint16_t last_number_ = 0;
  Stage stage_ = Stage::start;
  bool is_empty_ = false;
  bool overflow_ = false;
};

// Owning message for code paths that build or rewrite messages (forwarding).
struct Option {
  std::uint16_t number;
  std::vector<std::byte> value;
};

struct Message {
  Type type = Type::con;
  std::uint8_t code = 0;
  std::uint16_t message_id = 0;
  std::vector<std::byte> token;
  std::vector<Option> options;  // any order; serialize() sorts stably by number
  std::vector<std::byte> payload;

  static Message from_view(const MessageView& view);
  void add_option(std::uint16_t number, std::span<const std::byte> value);
  void add_uint_option(std::uint16_t number, std::uint32_t value);
  void add_string_option(std::uint16_t number, std::string_view value);
  void remove_option(std::uint16_t number);           // every occurrence
  const Option* find(std::uint16_t number) const;     // first occurrence or nullptr
};

// Options are sorted stably by number. Both return nothing (empty vector / 0) when the message
// cannot be encoded (token > 8, Empty code with content, option value > 65804 bytes) or, for the
// span form, does not fit.
std::vector<std::byte> serialize(const Message& message);
std::size_t serialize(const Message& message, std::span<std::byte> out);

// Exact number of bytes serialize() needs, or 0 when the message cannot be encoded.
std::size_t serialized_size(const Message& message);

// The options and payload alone (what follows the token), for the RFC 8323 stream framings: the
// size, and the bytes written into `out`; nullopt when the message cannot be encoded or, for the
// span form, does not fit. An empty body is a valid size 0.
std::optional<std::size_t> serialized_body_size(const Message& message);
std::optional<std::size_t> serialize_body(const Message& message, std::span<std::byte> out);

// Helpers for building values without reinterpret_cast at every call site.
inline std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}
inline std::string_view as_string(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
// Minimal big-endian encoding of a uint option value (0 -> no bytes); returns bytes used.
std::size_t encode_uint(std::uint32_t value, std::array<std::byte, 4>& out);

}  // namespace coapgw::coap
