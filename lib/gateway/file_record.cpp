#include "gateway/file_record.hpp"

#include "common/json.hpp"

#include <cstdio>
#include <ctime>

namespace coapgw::gateway {

std::string base64_encode(std::span<const std::byte> bytes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    unsigned v = static_cast<unsigned>(bytes[i]) << 16 | static_cast<unsigned>(bytes[i + 1]) << 8 |
                 static_cast<unsigned>(bytes[i + 2]);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    unsigned v = static_cast<unsigned>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<unsigned>(bytes[i + 1]) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += rest == 2 ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string rfc3339_utc_ms(std::chrono::system_clock::time_point t) {
  return json::rfc3339_utc_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

std::string format_file_record(const ForwardRequest& r, std::chrono::system_clock::time_point now) {
  std::string line;
  line.reserve(160 + r.path.size() + r.query.size() + r.payload.size() * 4 / 3 + r.identity.size());
  line += "{\"ts\":";
  json::append_string(line, rfc3339_utc_ms(now));
  line += ",\"identity\":";
  json::append_string(line, r.identity);
  line += ",\"session\":";
  line += std::to_string(r.session_id);
  line += ",\"remote\":";
  json::append_string(line, r.remote);
  line += ",\"method\":";
  json::append_string(line, r.method);
  line += ",\"path\":";
  json::append_string(line, r.path);
  line += ",\"query\":";
  json::append_string(line, r.query);
  line += ",\"content_format\":";
  line += r.content_format ? std::to_string(*r.content_format) : "null";
  if (json::is_valid_utf8(r.payload)) {
    line += ",\"payload\":";
    json::append_string(line, std::string_view(reinterpret_cast<const char*>(r.payload.data()),
                                              r.payload.size()));
  } else {
    line += ",\"payload_b64\":\"";
    line += base64_encode(r.payload);
    line += '"';
  }
  line += "}\n";
  return line;
}

}  // namespace coapgw::gateway
