// RFC 7252 §3 message format: header, token, delta-encoded options, payload marker.
#include "coap/message.hpp"
#include "common/bytes.hpp"

#include <algorithm>
#include <cstdio>

namespace coapgw::coap {
namespace {

constexpr std::uint8_t payload_marker = 0xff;
// Largest option delta or length the 14 + 2-byte form can carry.
constexpr std::size_t max_extended = 65535 + 269;

std::uint8_t u8(std::byte b) { return std::to_integer<std::uint8_t>(b); }

// Size of the nibble's extension bytes for a delta or length value.
constexpr std::size_t extension_size(std::size_t v) { return v < 13 ? 0 : v < 269 ? 1 : 2; }
constexpr std::uint8_t nibble(std::size_t v) {
  return static_cast<std::uint8_t>(v < 13 ? v : v < 269 ? 13 : 14);
}

// Reads the extension for one nibble at `pos`; false when it runs past the end.
bool read_extended(std::span<const std::byte> d, std::size_t& pos, std::uint8_t nib,
                   std::uint32_t& value) {
  if (nib < 13) {
    value = nib;
    return true;
  }
  if (nib == 13) {
    if (pos + 1 > d.size()) return false;
    value = 13u + u8(d[pos]);
    pos += 1;
    return true;
  }
  // nib == 14; 15 is handled by the caller
  if (pos + 2 > d.size()) return false;
  value = 269u + bytes::load_be16(d.data() + pos);
  pos += 2;
  return true;
}

void write_extended(std::byte* p, std::size_t v) {
  if (v < 13) return;
  if (v < 269) {
    p[0] = std::byte(v - 13);
    return;
  }
  bytes::store_be16(p, static_cast<std::uint16_t>(v - 269));
}

std::size_t option_wire_size(std::size_t delta, std::size_t length) {
  return 1 + extension_size(delta) + extension_size(length) + length;
}

}  // namespace

std::string_view type_name(Type type) {
  switch (type) {
    case Type::con: return "con";
    case Type::non: return "non";
    case Type::ack: return "ack";
    case Type::rst: return "rst";
  }
  return "";
}

std::string code_string(std::uint8_t c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%u.%02u", code_class(c), code_detail(c));
  return buf;
}

std::string_view method_name(std::uint8_t c) {
  switch (c) {
    case code::get: return "GET";
    case code::post: return "POST";
    case code::put: return "PUT";
    case code::del: return "DELETE";
    case code::fetch: return "FETCH";
    case code::patch: return "PATCH";
    case code::ipatch: return "IPATCH";
    default: return "";
  }
}

std::optional<std::uint8_t> method_code(std::string_view name) {
  if (name.empty()) return std::nullopt;
  for (std::uint8_t c = code::get; c <= code::ipatch; ++c) {
    if (method_name(c) == name) return c;
  }
  return std::nullopt;
}

const OptionView* MessageView::find(std::uint16_t number) const {
  for (std::size_t i = 0; i < option_count; ++i) {
    if (options[i].number == number) return &options[i];
    if (options[i].number > number) break;  // wire order is sorted
  }
  return nullptr;
}

std::string_view to_string(ParseError error) {
  switch (error) {
    case ParseError::ok: return "ok";
    case ParseError::too_short: return "too_short";
    case ParseError::bad_version: return "bad_version";
    case ParseError::bad_token_length: return "bad_token_length";
    case ParseError::truncated_token: return "truncated_token";
    case ParseError::reserved_nibble: return "reserved_nibble";
    case ParseError::truncated_option: return "truncated_option";
    case ParseError::option_number_overflow: return "option_number_overflow";
    case ParseError::payload_marker_without_payload: return "payload_marker_without_payload";
    case ParseError::too_many_options: return "too_many_options";
    case ParseError::empty_with_content: return "empty_with_content";
  }
  return "unknown";
}

std::optional<Header> parse_header(std::span<const std::byte> d) {
  if (d.size() < 4) return std::nullopt;
  const std::uint8_t b0 = u8(d[0]);
  if ((b0 >> 6) != 1) return std::nullopt;
  return Header{static_cast<Type>((b0 >> 4) & 0x3), static_cast<std::uint8_t>(b0 & 0x0f), u8(d[1]),
                bytes::load_be16(d.data() + 2)};
}

ParseError parse(std::span<const std::byte> d, MessageView& out) {
  if (d.size() < 4) return ParseError::too_short;
  const auto header = parse_header(d);
  if (!header) return ParseError::bad_version;
  if (header->token_length > max_token_length) return ParseError::bad_token_length;
  // RFC 7252 §4.1: an Empty message is exactly the 4-byte header.
  if (header->code == code::empty && (header->token_length != 0 || d.size() != 4))
    return ParseError::empty_with_content;
  const std::size_t tkl = header->token_length;
  if (d.size() < 4 + tkl) return ParseError::truncated_token;

  out.type = header->type;
  out.code = header->code;
  out.message_id = header->message_id;
  out.token = d.subspan(4, tkl);
  return parse_body(d.subspan(4 + tkl), out);
}

ParseError parse_body(std::span<const std::byte> d, MessageView& out) {
  out.option_count = 0;
  out.payload = {};
  std::size_t pos = 0;
  std::uint32_t number = 0;
  while (pos < d.size()) {
    const std::uint8_t first = u8(d[pos]);
    if (first == payload_marker) {
      if (pos + 1 == d.size()) return ParseError::payload_marker_without_payload;
      out.payload = d.subspan(pos + 1);
      return ParseError::ok;
    }
    const std::uint8_t delta_nib = first >> 4;
    const std::uint8_t length_nib = first & 0x0f;
    if (delta_nib == 15 || length_nib == 15) return ParseError::reserved_nibble;
    ++pos;
    std::uint32_t delta = 0;
    std::uint32_t length = 0;
    if (!read_extended(d, pos, delta_nib, delta)) return ParseError::truncated_option;
    if (!read_extended(d, pos, length_nib, length)) return ParseError::truncated_option;
    number += delta;
    if (number > 0xffff) return ParseError::option_number_overflow;
    if (length > d.size() - pos) return ParseError::truncated_option;
    if (out.option_count == max_options) return ParseError::too_many_options;
    out.options[out.option_count++] =
        OptionView{static_cast<std::uint16_t>(number), d.subspan(pos, length)};
    pos += length;
  }
  return ParseError::ok;
}

// ---- MessageWriter ----

bool MessageWriter::reserve(std::size_t n) {
  if (overflow_) return false;
  if (n > buffer_.size() - size_) {
    overflow_ = true;
    return false;
  }
  return true;
}

bool MessageWriter::header(Type type, std::uint8_t c, std::uint16_t message_id,
                           std::span<const std::byte> token) {
  if (stage_ != Stage::start || token.size() > max_token_length) return false;
  if (c == code::empty && !token.empty()) return false;
  if (!reserve(4 + token.size())) return false;
  std::byte* p = buffer_.data();
  p[0] = std::byte(0x40 | (static_cast<unsigned>(type) & 0x3u) << 4 | token.size());
  p[1] = std::byte(c);
  bytes::store_be16(p + 2, message_id);
  std::copy(token.begin(), token.end(), p + 4);
  size_ = 4 + token.size();
  stage_ = Stage::options;
  is_empty_ = c == code::empty;
  return true;
}

bool MessageWriter::body(std::uint8_t c) {
  if (stage_ != Stage::start || overflow_) return false;
  stage_ = Stage::options;
  is_empty_ = c == code::empty;
  return true;
}

bool MessageWriter::option(std::uint16_t number, std::span<const std::byte> value) {
  if (stage_ != Stage::options || is_empty_ || overflow_) return false;
  if (number < last_number_ || value.size() > max_extended) return false;
  const std::size_t delta = number - last_number_;
  const std::size_t len = value.size();
  if (!reserve(option_wire_size(delta, len))) return false;
  std::byte* p = buffer_.data() + size_;
  *p++ = std::byte(nibble(delta) << 4 | nibble(len));
  write_extended(p, delta);
  p += extension_size(delta);
  write_extended(p, len);
  p += extension_size(len);
  std::copy(value.begin(), value.end(), p);
  size_ += option_wire_size(delta, len);
  last_number_ = number;
  return true;
}

bool MessageWriter::option_uint(std::uint16_t number, std::uint32_t value) {
  std::array<std::byte, 4> buf;
  const std::size_t n = encode_uint(value, buf);
  return option(number, std::span<const std::byte>(buf.data(), n));
}

bool MessageWriter::option_string(std::uint16_t number, std::string_view value) {
  return option(number, as_bytes(value));
}

bool MessageWriter::payload(std::span<const std::byte> bytes) {
  if (stage_ != Stage::options || overflow_) return false;
  if (bytes.empty()) {
    stage_ = Stage::done;
    return true;
  }
  if (is_empty_) return false;
  if (!reserve(1 + bytes.size())) return false;
  buffer_[size_] = std::byte{payload_marker};
  std::copy(bytes.begin(), bytes.end(), buffer_.data() + size_ + 1);
  size_ += 1 + bytes.size();
  stage_ = Stage::done;
  return true;
}

std::size_t encode_uint(std::uint32_t value, std::array<std::byte, 4>& out) {
  const std::size_t n = bytes::min_be_size(value);
  bytes::store_be(out.data(), value, n);
  return n;
}

// ---- Message ----

Message Message::from_view(const MessageView& view) {
  Message m;
  m.type = view.type;
  m.code = view.code;
  m.message_id = view.message_id;
  m.token.assign(view.token.begin(), view.token.end());
  m.options.reserve(view.option_count);
  for (const OptionView& o : view.option_list())
    m.options.push_back(Option{o.number, {o.value.begin(), o.value.end()}});
  m.payload.assign(view.payload.begin(), view.payload.end());
  return m;
}

void Message::add_option(std::uint16_t number, std::span<const std::byte> value) {
  options.push_back(Option{number, {value.begin(), value.end()}});
}

void Message::add_uint_option(std::uint16_t number, std::uint32_t value) {
  std::array<std::byte, 4> buf;
  const std::size_t n = encode_uint(value, buf);
  add_option(number, std::span<const std::byte>(buf.data(), n));
}

void Message::add_string_option(std::uint16_t number, std::string_view value) {
  add_option(number, as_bytes(value));
}

void Message::remove_option(std::uint16_t number) {
  std::erase_if(options, [number](const Option& o) { return o.number == number; });
}

const Option* Message::find(std::uint16_t number) const {
  for (const Option& o : options)
    if (o.number == number) return &o;
  return nullptr;
}

namespace {

std::vector<const Option*> sorted_options(const Message& m) {
  std::vector<const Option*> sorted;
  sorted.reserve(m.options.size());
  for (const Option& o : m.options) sorted.push_back(&o);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const Option* a, const Option* b) { return a->number < b->number; });
  return sorted;
}

// Options and payload after whatever `w` was started with (header() or body()).
bool write_body(MessageWriter& w, const Message& m, const std::vector<const Option*>& sorted) {
  for (const Option* o : sorted)
    if (!w.option(o->number, o->value)) return false;
  return w.payload(m.payload);
}

std::size_t write_sorted(const Message& m, const std::vector<const Option*>& sorted,
                         std::span<std::byte> out) {
  MessageWriter w(out);
  if (!w.header(m.type, m.code, m.message_id, m.token)) return 0;
  if (!write_body(w, m, sorted)) return 0;
  return w.size();
}

}  // namespace

std::optional<std::size_t> serialized_body_size(const Message& m) {
  if (m.code == code::empty && (!m.options.empty() || !m.payload.empty())) return std::nullopt;
  std::size_t size = 0;
  std::uint16_t last = 0;
  for (const Option* o : sorted_options(m)) {
    if (o->value.size() > max_extended) return std::nullopt;
    size += option_wire_size(o->number - last, o->value.size());
    last = o->number;
  }
  if (!m.payload.empty()) size += 1 + m.payload.size();
  return size;
}

std::optional<std::size_t> serialize_body(const Message& m, std::span<std::byte> out) {
  MessageWriter w(out);
  if (!w.body(m.code) || !write_body(w, m, sorted_options(m))) return std::nullopt;
  return w.size();
}

std::size_t serialized_size(const Message& m) {
  if (m.token.size() > max_token_length) return 0;
  if (m.code == code::empty && !m.token.empty()) return 0;
  const auto body = serialized_body_size(m);
  return body ? 4 + m.token.size() + *body : 0;
}

std::vector<std::byte> serialize(const Message& m) {
  const std::size_t size = serialized_size(m);
  if (size == 0) return {};
  std::vector<std::byte> out(size);
  if (write_sorted(m, sorted_options(m), out) != size) return {};
  return out;
}

std::size_t serialize(const Message& m, std::span<std::byte> out) {
  return write_sorted(m, sorted_options(m), out);
}

}  // namespace coapgw::coap
