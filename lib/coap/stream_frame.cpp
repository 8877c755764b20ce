// RFC 8323 §3.2 and §4.4 frame headers around the RFC 7252 body, and the §5 signalling messages.
#include "coap/stream_frame.hpp"

#include <algorithm>

#include "coap/option.hpp"
#include "common/bytes.hpp"

namespace coapgw::coap {
namespace {

// §3.2: Len 13, 14 and 15 say the body length minus these offsets follows in 1, 2 or 4 bytes.
constexpr std::uint64_t offset13 = 13, offset14 = 269, offset15 = 65805;
constexpr std::uint64_t max_body = offset15 + 0xffffffffull;

std::uint8_t u8(std::byte b) { return std::to_integer<std::uint8_t>(b); }

constexpr std::size_t length_extension_size(std::uint8_t len_nibble) {
  return len_nibble < 13 ? 0 : len_nibble == 13 ? 1 : len_nibble == 14 ? 2 : 4;
}

FrameError from_parse_error(ParseError e) {
  switch (e) {
    case ParseError::ok: return FrameError::ok;
    case ParseError::reserved_nibble: return FrameError::reserved_nibble;
    case ParseError::truncated_option: return FrameError::truncated_option;
    case ParseError::option_number_overflow: return FrameError::option_number_overflow;
    case ParseError::payload_marker_without_payload: return FrameError::payload_marker_without_payload;
    case ParseError::too_many_options: return FrameError::too_many_options;
    default: return FrameError::too_short;  // parse_body reports none of the header errors
  }
}

// Fills the fields the frame header gives, then the body.
FrameError parse_after_header(std::span<const std::byte> frame, std::size_t header_size,
                              std::size_t tkl, MessageView& out) {
  out.type = Type::con;
  out.message_id = 0;
  out.code = u8(frame[header_size - 1]);
  out.token = frame.subspan(header_size, tkl);
  return from_parse_error(parse_body(frame.subspan(header_size + tkl), out));
}

// Writes the header and token for a body of `body_size` bytes; returns the header+token size, or 0
// when `out` is too small.
std::size_t write_head(Framing framing, const Message& m, std::size_t body_size, std::span<std::byte> out) {
  const std::size_t tkl = m.token.size();
  std::uint8_t nibble = 0;
  std::size_t ext = 0;
  std::uint64_t ext_value = 0;
  if (framing == Framing::tcp) {
    if (body_size < offset13) {
      nibble = static_cast<std::uint8_t>(body_size);
    } else if (body_size < offset14) {
      nibble = 13, ext = 1, ext_value = body_size - offset13;
    } else if (body_size < offset15) {
      nibble = 14, ext = 2, ext_value = body_size - offset14;
    } else {
      nibble = 15, ext = 4, ext_value = body_size - offset15;
    }
  }
  const std::size_t head = 1 + ext + 1 + tkl;
  if (out.size() < head) return 0;
  out[0] = std::byte(nibble << 4 | tkl);
  bytes::store_be(out.data() + 1, ext_value, ext);
  out[1 + ext] = std::byte{m.code};
  std::copy(m.token.begin(), m.token.end(), out.data() + 2 + ext);
  return head;
}

}  // namespace

std::string_view to_string(FrameError error) {
  switch (error) {
    case FrameError::ok: return "ok";
    case FrameError::too_short: return "too_short";
    case FrameError::too_long: return "too_long";
    case FrameError::too_large: return "too_large";
    case FrameError::bad_token_length: return "bad_token_length";
    case FrameError::nonzero_length: return "nonzero_length";
    case FrameError::reserved_nibble: return "reserved_nibble";
    case FrameError::truncated_option: return "truncated_option";
    case FrameError::option_number_overflow: return "option_number_overflow";
    case FrameError::payload_marker_without_payload: return "payload_marker_without_payload";
    case FrameError::too_many_options: return "too_many_options";
  }
  return "unknown";
}

std::optional<FrameExtent> tcp_frame_extent(std::span<const std::byte> prefix) {
  if (prefix.empty()) return std::nullopt;
  const std::uint8_t nibble = u8(prefix[0]) >> 4;
  const std::size_t ext = length_extension_size(nibble);
  if (prefix.size() < 1 + ext) return std::nullopt;
  std::uint64_t body = nibble;
  if (nibble == 13) body = offset13 + u8(prefix[1]);
  if (nibble == 14) body = offset14 + bytes::load_be16(prefix.data() + 1);
  if (nibble == 15) body = offset15 + bytes::load_be32(prefix.data() + 1);
  FrameExtent extent;
  extent.header_size = 1 + ext + 1;
  extent.token_length = u8(prefix[0]) & 0x0f;
  extent.frame_size = extent.header_size + extent.token_length + body;
  return extent;
}

FrameError parse_frame(Framing framing, std::span<const std::byte> frame, MessageView& out,
                       std::size_t max_size) {
  if (frame.size() > max_size) return FrameError::too_large;
  if (framing == Framing::websocket) {
    if (frame.size() < 2) return FrameError::too_short;
    if ((u8(frame[0]) >> 4) != 0) return FrameError::nonzero_length;
    const std::size_t tkl = u8(frame[0]) & 0x0f;
    if (tkl > max_token_length) return FrameError::bad_token_length;
    if (frame.size() < 2 + tkl) return FrameError::too_short;
    return parse_after_header(frame, 2, tkl, out);
  }
  const auto extent = tcp_frame_extent(frame);
  if (!extent || frame.size() < extent->header_size) return FrameError::too_short;
  if (extent->token_length > max_token_length) return FrameError::bad_token_length;
  if (frame.size() < extent->frame_size) return FrameError::too_short;
  if (frame.size() > extent->frame_size) return FrameError::too_long;
  return parse_after_header(frame, extent->header_size, extent->token_length, out);
}

std::size_t frame_size(Framing framing, const Message& m) {
  if (m.token.size() > max_token_length) return 0;
  const auto body = serialized_body_size(m);
  if (!body || *body > max_body) return 0;
  std::size_t ext = 0;
  if (framing == Framing::tcp) ext = *body < offset13 ? 0 : *body < offset14 ? 1 : *body < offset15 ? 2 : 4;
  return 1 + ext + 1 + m.token.size() + *body;
}

std::size_t serialize_frame(Framing framing, const Message& m, std::span<std::byte> out) {
  const std::size_t size = frame_size(framing, m);
  if (size == 0 || size > out.size()) return 0;
  const auto body = serialized_body_size(m);
  const std::size_t head = write_head(framing, m, *body, out);
  if (head == 0) return 0;
  const auto written = serialize_body(m, out.subspan(head, size - head));
  return written && head + *written == size ? size : 0;
}

std::vector<std::byte> serialize_frame(Framing framing, const Message& m) {
  std::vector<std::byte> out(frame_size(framing, m));
  if (out.empty() || serialize_frame(framing, m, out) != out.size()) return {};
  return out;
}

// ---- §5 signalling ----

Message make_csm(const Csm& csm) {
  Message m;
  m.code = signal::csm;
  m.add_uint_option(signal::max_message_size, csm.max_message_size);
  if (csm.block_wise) m.add_option(signal::block_wise_transfer, {});
  return m;
}

std::optional<std::uint16_t> apply_csm(const MessageView& csm, Csm& settings) {
  if (auto bad = unknown_critical_signal_option(csm)) return bad;
  for (const OptionView& o : csm.option_list()) {
    if (o.number == signal::max_message_size) {
      if (o.value.size() > 4) return o.number;
      settings.max_message_size = decode_uint(o.value);
    } else if (o.number == signal::block_wise_transfer) {
      settings.block_wise = true;
    }
  }
  return std::nullopt;
}

Message make_ping(std::span<const std::byte> token, bool custody) {
  Message m;
  m.code = signal::ping;
  m.token.assign(token.begin(), token.end());
  if (custody) m.add_option(signal::custody, {});
  return m;
}

Message make_pong(std::span<const std::byte> token, bool custody) {
  Message m = make_ping(token, custody);
  m.code = signal::pong;
  return m;
}

namespace {
// Release and Abort: one optional uint option and a diagnostic payload.
Message ending_signal(std::uint8_t c, std::uint16_t number, std::optional<std::uint32_t> value,
                      std::string_view diagnostic) {
  Message m;
  m.code = c;
  if (value) m.add_uint_option(number, *value);
  m.payload.assign(as_bytes(diagnostic).begin(), as_bytes(diagnostic).end());
  return m;
}
}  // namespace

Message make_release(std::string_view diagnostic, std::optional<std::uint32_t> hold_off_seconds) {
  return ending_signal(signal::release, signal::hold_off, hold_off_seconds, diagnostic);
}

Message make_abort(std::string_view diagnostic, std::optional<std::uint16_t> bad_csm_option) {
  return ending_signal(signal::abort, signal::bad_csm_option, bad_csm_option, diagnostic);
}

ReleaseInfo read_release(const MessageView& release) {
  ReleaseInfo info;
  for (const OptionView& o : release.option_list()) {
    if (o.number == signal::alternative_address)
      info.alternative_addresses.emplace_back(as_string(o.value));
    else if (o.number == signal::hold_off)
      info.hold_off_seconds = decode_uint(o.value);
  }
  return info;
}

std::optional<std::uint16_t> unknown_critical_signal_option(const MessageView& signal) {
  // Every option §5 defines is elective (even numbers), so no critical option is known yet.
  for (const OptionView& o : signal.option_list())
    if (is_critical(o.number)) return o.number;
  return std::nullopt;
}

}  // namespace coapgw::coap
