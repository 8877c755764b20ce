// JSON page rendering for /v1/sessions; see sessions_page.hpp.
#include "admin/sessions_page.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>

namespace coapgw::admin {

namespace {

std::optional<std::uint64_t> parse_decimal(std::string_view text) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) {
        return c >= '0' && c <= '9';
      }))
    return std::nullopt;
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // UTF-16 surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

PageQueryResult parse_page_query(std::string_view query) {
  PageQuery q;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = param.find('=');
    const std::string_view key = param.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view{} : param.substr(eq + 1);
    if (key == "limit") {
      // Huge values are clamped like any value above the maximum.
      const bool digits = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
        return c >= '0' && c <= '9';
      });
      const auto n = parse_decimal(value);
      if (!digits || (n && *n == 0))
        return {std::nullopt, "limit must be an integer from 1 to 1000"};
      q.limit = (!n || *n > max_page_limit) ? max_page_limit : static_cast<std::size_t>(*n);
    } else if (key == "cursor") {
      if (value.empty()) {
        q.after_id = 0;
      } else if (auto n = parse_decimal(value)) {
        q.after_id = *n;
      } else {
        return {std::nullopt, "cursor must be the decimal next_cursor of a previous page"};
      }
    }
  }
  return {q, {}};
}

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20 || c == 0x7F) {
      switch (c) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xF]);
      }
      ++i;
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (const std::size_t n = utf8_sequence_length(text, i); n != 0) {
      out.append(text.substr(i, n));
      i += n;
    } else {
      out += "\\ufffd";  // identities are bytes from the device; JSON must stay valid
      ++i;
    }
  }
  out.push_back('"');
}

std::string rfc3339_utc(std::int64_t unix_ms) {
  std::int64_t secs = unix_ms / 1000;
  std::int64_t ms = unix_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  if (!::gmtime_r(&t, &tm)) return "1970-01-01T00:00:00.000Z";
  char buf[48];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms));
  return out + frac;
}

std::string render_error(std::string_view message) {
  std::string out = "{\"error\":";
  append_json_string(out, message);
  out += "}\n";
  return out;
}

std::string render_sessions_page(std::vector<SessionInfo> sessions, const PageQuery& query) {
  std::erase_if(sessions, [&](const SessionInfo& s) { return s.id <= query.after_id; });
  std::sort(sessions.begin(), sessions.end(),
            [](const SessionInfo& a, const SessionInfo& b) { return a.id < b.id; });
  sessions.erase(std::unique(sessions.begin(), sessions.end(),
                             [](const SessionInfo& a, const SessionInfo& b) { return a.id == b.id; }),
                 sessions.end());
  const bool more = sessions.size() > query.limit;
  if (more) sessions.resize(query.limit);

  std::string out = "{\"sessions\":[";
  out.reserve(64 + sessions.size() * 320);
  bool first = true;
  for (const auto& s : sessions) {
    if (!first) out.push_back(',');
    first = false;
    out += "{\"id\":" + std::to_string(s.id);
    out += ",\"proto\":";
    append_json_string(out, s.proto);
    out += ",\"type\":";
    append_json_string(out, s.type);
    out += ",\"state\":";
    append_json_string(out, s.state);
    out += ",\"remote\":";
    append_json_string(out, s.remote);
    out += ",\"local\":";
    append_json_string(out, s.local);
    out += ",\"ifindex\":" + std::to_string(s.ifindex);
    out += ",\"identity\":";
    if (s.identity.empty())
      out += "null";
    else
      append_json_string(out, s.identity);
    out += ",\"created\":\"" + rfc3339_utc(s.created_unix_ms) + "\"";
    out += ",\"last_seen\":\"" + rfc3339_utc(s.last_seen_unix_ms) + "\"";
    out += ",\"created_unix_ms\":" + std::to_string(s.created_unix_ms);
    out += ",\"last_seen_unix_ms\":" + std::to_string(s.last_seen_unix_ms);
    out += ",\"refcount\":" + std::to_string(s.refcount);
    out += s.idle ? ",\"idle\":true}" : ",\"idle\":false}";
  }
  out += "],\"next_cursor\":";
  if (more && !sessions.empty())
    out += "\"" + std::to_string(sessions.back().id) + "\"";
  else
    out += "null";
  out += "}\n";
  return out;
}

}  // namespace coapgw::admin
