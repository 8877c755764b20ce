// coapgw::json — the few JSON pieces written by hand in several places (admin API pages, the file
// sink's lines, JSON log lines), so they escape and format the same way everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace coapgw::json {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid (strict: no overlongs, no
// surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);
bool is_valid_utf8(std::string_view s);
inline bool is_valid_utf8(std::span<const std::byte> bytes) {
  return is_valid_utf8(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

// Appends `text` as a JSON string literal: quotes, backslashes and control characters escaped,
// invalid UTF-8 replaced by U+FFFD (identities and paths are bytes from devices; the JSON must stay
// valid).
void append_string(std::string& out, std::string_view text);

// "2024-05-01T12:00:00.123Z"
std::string rfc3339_utc_ms(std::int64_t unix_ms);

// Writes one JSON object into `out`, member by member, in the order called: `{` on construction,
// `}` on close(). Keys are our own identifiers (written as they are); string values are escaped
// with append_string. Hand-written rather than a JSON library because the file sink writes one
// object per forwarded request and the sessions page up to a million: no tree, no allocation
// beyond `out`.
class ObjectWriter {
 public:
  explicit ObjectWriter(std::string& out) : out_(out) { out_.push_back('{'); }
  ObjectWriter& string(std::string_view key, std::string_view value);
  // An empty `value` is written as null.
  ObjectWriter& string_or_null(std::string_view key, std::string_view value);
  ObjectWriter& number(std::string_view key, std::int64_t value);
  ObjectWriter& boolean(std::string_view key, bool value);
  ObjectWriter& null(std::string_view key);
  // The key, then `json` as it is (already valid JSON).
  ObjectWriter& raw(std::string_view key, std::string_view json);
  void close() { out_.push_back('}'); }

 private:
  void key(std::string_view k);
  std::string& out_;
  bool first_ = true;
};

}  // namespace coapgw::json
