// coapgw::coap stream framing — the RFC 8323 message formats of CoAP over TCP/TLS (§3.2) and over
// WebSockets (§4.4), and the signalling messages of §5 (CSM, Ping, Pong, Release, Abort).
//
// Owns the frame header (Len nibble with 8/16/32-bit extended lengths, TKL, Code, Token) and how
// long a frame is from its first bytes, so a connection can cut a byte stream into frames without
// buffering more than one. Options and payload are the RFC 7252 encoding of coap/message.hpp
// (parse_body, serialize_body), not a copy of it. Frames have no type and no message id: a parsed
// frame's MessageView has type con and message_id 0, and serialize_frame ignores both. Pure
// functions over bytes, like the rest of coap/, and fuzzed by tests/fuzz/fuzz_stream_frame.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "coap/message.hpp"

namespace coapgw::coap {

// §3.2: TCP and TLS carry a length in the header; §4.4: a WebSocket binary frame carries exactly
// one message and the Len nibble is 0.
enum class Framing : std::uint8_t { tcp, websocket };

// §5: signalling codes are class 7.
namespace signal {
inline constexpr std::uint8_t csm = 0xe1, ping = 0xe2, pong = 0xe3, release = 0xe4, abort = 0xe5;
// Option numbers are per signalling code (§5.3-§5.6).
inline constexpr std::uint16_t max_message_size = 2, block_wise_transfer = 4;  // CSM
inline constexpr std::uint16_t custody = 2;                                    // Ping, Pong
inline constexpr std::uint16_t alternative_address = 2, hold_off = 4;          // Release
inline constexpr std::uint16_t bad_csm_option = 2;                             // Abort
}  // namespace signal
constexpr bool is_signal(std::uint8_t c) { return code_class(c) == 7; }

// §5.3.1: what a peer may assume of the other before it has read the other's CSM.
inline constexpr std::size_t default_max_message_size = 1152;
// Longest §3.2 header before the token: Len/TKL byte, 4-byte extended length, Code.
inline constexpr std::size_t max_frame_header_size = 6;

enum class FrameError : std::uint8_t {
  ok = 0,
  too_short,          // fewer bytes than the header says (or than any header)
  too_long,           // more bytes than the header says: a caller bug or a WebSocket peer's
  too_large,          // longer than the limit the caller passed (our Max-Message-Size)
  bad_token_length,   // TKL 9..15 (RFC 8974 extended tokens are not supported)
  nonzero_length,     // §4.4: a WebSocket frame's Len nibble must be 0
  reserved_nibble,    // the body errors, as coap::ParseError names them
  truncated_option,
  option_number_overflow,
  payload_marker_without_payload,
  too_many_options,
};
std::string_view to_string(FrameError error);  // snake_case, usable as a metric label

// Where a §3.2 frame ends: header_size bytes of header (Len/TKL, extended length, Code), then the
// token, then the body; frame_size is all of it.
struct FrameExtent {
  std::size_t header_size = 0;
  std::size_t token_length = 0;
  std::uint64_t frame_size = 0;
};
// From the first bytes of a TCP/TLS stream: nullopt while `prefix` is too short to tell (it never
// needs more than max_frame_header_size bytes).
std::optional<FrameExtent> tcp_frame_extent(std::span<const std::byte> prefix);

// Parses exactly one whole frame (`frame` is the frame, no more and no less) into `out`, whose spans
// point into `frame`. Frames longer than `max_size` bytes are too_large before anything else.
// On error `out` is unspecified but valid.
FrameError parse_frame(Framing framing, std::span<const std::byte> frame, MessageView& out,
                       std::size_t max_size = SIZE_MAX);

// The frame of a message (type and message id are ignored): its exact size (0 when it cannot be
// encoded: token > 8, an Empty code with options or payload, an option value > 65804 bytes), the
// bytes, or the bytes written into `out` (0 when it does not fit).
std::size_t frame_size(Framing framing, const Message& message);
std::vector<std::byte> serialize_frame(Framing framing, const Message& message);
std::size_t serialize_frame(Framing framing, const Message& message, std::span<std::byte> out);

// ---- §5 signalling ----

// The settings a CSM carries. Values persist across CSMs of one connection (§5.3): apply_csm only
// changes what the message names.
struct Csm {
  std::uint32_t max_message_size = default_max_message_size;
  bool block_wise = false;
};
Message make_csm(const Csm& csm);
// Applies a received CSM to `settings`. Returns the number of the first option that cannot be
// honoured (an unknown critical option, or a Max-Message-Size longer than 4 bytes): §5.3 says to
// Abort with that number in Bad-CSM-Option.
std::optional<std::uint16_t> apply_csm(const MessageView& csm, Csm& settings);

// Ping/Pong with the token given (§5.4: a Pong echoes the Ping's token), Custody when asked.
Message make_ping(std::span<const std::byte> token, bool custody = false);
Message make_pong(std::span<const std::byte> token, bool custody = false);

// Release (§5.5) and Abort (§5.6), with a diagnostic payload (UTF-8, may be empty).
Message make_release(std::string_view diagnostic, std::optional<std::uint32_t> hold_off_seconds = {});
Message make_abort(std::string_view diagnostic, std::optional<std::uint16_t> bad_csm_option = {});

// What a received Release asks: where to reconnect (Alternative-Address, repeatable) and how long
// to wait before reconnecting (Hold-Off, seconds).
struct ReleaseInfo {
  std::vector<std::string> alternative_addresses;
  std::optional<std::uint32_t> hold_off_seconds;
};
ReleaseInfo read_release(const MessageView& release);

// The first critical option a signalling message carries that its code does not define (§5.2:
// such a message is processed as an error), or nullopt.
std::optional<std::uint16_t> unknown_critical_signal_option(const MessageView& signal);

}  // namespace coapgw::coap
