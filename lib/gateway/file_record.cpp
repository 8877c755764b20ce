#include "gateway/file_record.hpp"

#include <cstdio>
#include <ctime>

namespace coapgw::gateway {

bool is_valid_utf8(std::span<const std::byte> bytes) {
  std::size_t i = 0;
  const std::size_t n = bytes.size();
  auto at = [&](std::size_t k) { return static_cast<unsigned>(bytes[k]); };
  while (i < n) {
    unsigned c = at(i);
    if (c < 0x80) { ++i; continue; }
    std::size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) { len = 2; }
    else if (c == 0xE0) { len = 3; lo = 0xA0; }          // no overlongs
    else if (c >= 0xE1 && c <= 0xEC) { len = 3; }
    else if (c == 0xED) { len = 3; hi = 0x9F; }          // no surrogates
    else if (c >= 0xEE && c <= 0xEF) { len = 3; }
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) { len = 4; }
    else if (c == 0xF4) { len = 4; hi = 0x8F; }          // <= U+10FFFF
    else return false;
    if (i + len > n) return false;
    if (at(i + 1) < lo || at(i + 1) > hi) return false;
    for (std::size_t k = 2; k < len; ++k) {
      if (at(i + k) < 0x80 || at(i + k) > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

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

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (char ch : text) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(ch)));
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string rfc3339_utc_ms(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms_total = duration_cast<milliseconds>(t.time_since_epoch()).count();
  auto secs = ms_total / 1000;
  auto ms = ms_total % 1000;
  if (ms < 0) { ms += 1000; secs -= 1; }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

std::string format_file_record(const ForwardRequest& r, std::chrono::system_clock::time_point now) {
  std::string line;
  line.reserve(160 + r.path.size() + r.query.size() + r.payload.size() * 4 / 3 + r.identity.size());
  line += "{\"ts\":";
  append_json_string(line, rfc3339_utc_ms(now));
  line += ",\"identity\":";
  append_json_string(line, r.identity);
  line += ",\"session\":";
  line += std::to_string(r.session_id);
  line += ",\"remote\":";
  append_json_string(line, r.remote);
  line += ",\"method\":";
  append_json_string(line, r.method);
  line += ",\"path\":";
  append_json_string(line, r.path);
  line += ",\"query\":";
  append_json_string(line, r.query);
  line += ",\"content_format\":";
  line += r.content_format ? std::to_string(*r.content_format) : "null";
  if (is_valid_utf8(r.payload)) {
    line += ",\"payload\":";
    append_json_string(line, std::string_view(reinterpret_cast<const char*>(r.payload.data()),
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
