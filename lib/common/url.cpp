#include "common/url.hpp"

#include "common/bytes.hpp"

namespace coapgw::url {
namespace {

bool is_unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}
bool is_sub_delim(unsigned char c) {
  return c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' ||
         c == '+' || c == ',' || c == ';' || c == '=';
}
// RFC 3986 pchar, minus pct-encoded (a literal '%' must itself be encoded).
bool is_pchar(unsigned char c) { return is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@'; }

bool keep_in_segment(unsigned char c) { return is_pchar(c); }
bool keep_in_query(unsigned char c) { return c != '&' && (is_pchar(c) || c == '/' || c == '?'); }
bool keep_in_target(unsigned char c) { return is_pchar(c) || c == '/' || c == '?' || c == '%'; }
bool keep_in_header(unsigned char c) { return c >= 0x20 && c != 0x7f; }
bool keep_in_link_target(unsigned char c) {
  return c > 0x20 && c < 0x7f && c != '<' && c != '>' && c != '"';
}

template <class Keep>
void append_encoded(std::string& out, std::string_view text, Keep keep) {
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (keep(c)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(bytes::hex_upper[c >> 4]);  // RFC 3986 §2.1: upper case
      out.push_back(bytes::hex_upper[c & 0xf]);
    }
  }
}

template <class Keep>
std::string encoded(std::string_view text, Keep keep) {
  std::string out;
  out.reserve(text.size());
  append_encoded(out, text, keep);
  return out;
}

std::vector<std::string> split_decoded(std::string_view text, char sep, bool skip_empty) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    auto part = text.substr(start, end - start);
    if (!part.empty() || !skip_empty) out.push_back(percent_decode(part));
    start = end + 1;
  }
  return out;
}

bool has_dot_part(std::string_view s) {
  std::size_t start = 0;
  while (start <= s.size()) {
    auto end = s.find_first_of("/\\", start);
    if (end == std::string_view::npos) end = s.size();
    auto part = s.substr(start, end - start);
    // A path parameter (";x") does not change what some servers resolve the segment to (Tomcat
    // and Jetty read "..;x" as ".."), and some trim trailing spaces and dots (IIS, Windows): a
    // part that is only dots once those are set aside is refused. "..." included.
    if (auto semicolon = part.find(';'); semicolon != std::string_view::npos) part = part.substr(0, semicolon);
    while (!part.empty() && (part.back() == ' ' || part.back() == '\t')) part.remove_suffix(1);
    if (!part.empty() && part.find_first_not_of('.') == std::string_view::npos) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

void append_segment(std::string& out, std::string_view raw) { append_encoded(out, raw, keep_in_segment); }
std::string percent_encode_segment(std::string_view raw) { return encoded(raw, keep_in_segment); }

void append_query(std::string& out, std::string_view raw) { append_encoded(out, raw, keep_in_query); }
std::string percent_encode_query(std::string_view raw) { return encoded(raw, keep_in_query); }

std::string percent_encode_target(std::string_view text) { return encoded(text, keep_in_target); }
std::string percent_encode_controls(std::string_view text) { return encoded(text, keep_in_header); }
std::string percent_encode_link_target(std::string_view text) { return encoded(text, keep_in_link_target); }

std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = bytes::hex_value(in[i + 1]);
      int lo = bytes::hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i]);
  }
  return out;
}

std::string_view scheme_of(std::string_view url) {
  const auto sep = url.find("://");
  return sep == std::string_view::npos ? std::string_view{} : url.substr(0, sep);
}

std::optional<ServerUrl> parse_server_url(std::string_view url) {
  const auto sep = url.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  ServerUrl out;
  out.scheme = std::string(url.substr(0, sep));
  std::string_view rest = url.substr(sep + 3);
  for (char ch : rest) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f || c == '?' || c == '#') return std::nullopt;
  }
  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) out.path = std::string(rest.substr(slash));
  if (authority.find('@') != std::string_view::npos) return std::nullopt;  // no userinfo
  std::string_view host, port;
  bool has_port = false;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port = after.substr(1);
      has_port = true;
    }
    out.bracketed = true;
  } else {
    const auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      has_port = true;
    }
  }
  if (host.empty()) return std::nullopt;
  if (has_port) {
    if (port.empty() || port.size() > 5) return std::nullopt;
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return std::nullopt;
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return std::nullopt;
    out.port = static_cast<std::uint16_t>(value);
  }
  out.host = std::string(host);
  return out;
}

std::vector<std::string> split_path(std::string_view encoded_path) { return split_decoded(encoded_path, '/', true); }

std::vector<std::string> split_query(std::string_view encoded_query) {
  if (encoded_query.empty()) return {};
  return split_decoded(encoded_query, '&', false);
}

bool is_dot_segment_risk(std::string_view raw_segment) {
  // Without a '.' there is no dot part, and without a '%' decoding cannot make one: the common
  // case costs one scan and no allocation.
  if (raw_segment.find_first_of(".%") == std::string_view::npos) return false;
  std::string current(raw_segment);
  // Each decoding round that changes anything shortens the text by at least two bytes, so this
  // ends; the bound only keeps the cost of a hostile 255-byte option small.
  for (int round = 0; round < 128; ++round) {
    if (has_dot_part(current)) return true;
    std::string next = percent_decode(current);
    if (next == current) return false;
    current = std::move(next);
  }
  return true;
}

}  // namespace coapgw::url
