#include "upstream/mapping.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <limits>
#include <string>
#include <utility>

#include "common/bytes.hpp"
#include "common/url.hpp"
#include "upstream/forward.hpp"

namespace coapgw::upstream {
namespace {

struct CfEntry {
  std::uint16_t cf;
  std::string_view media_type;
};

// IANA "CoAP Content-Formats" registry, the entries without parameters (plus
// text/plain's charset) so the reverse lookup by bare media type is exact.
constexpr std::array<CfEntry, 27> cf_table{{
    {0, "text/plain;charset=utf-8"},
    {40, "application/link-format"},
    {41, "application/xml"},
    {42, "application/octet-stream"},
    {47, "application/exi"},
    {50, "application/json"},
    {51, "application/json-patch+json"},
    {52, "application/merge-patch+json"},
    {60, "application/cbor"},
    {61, "application/cwt"},
    {62, "application/multipart-core"},
    {63, "application/cbor-seq"},
    {110, "application/senml+json"},
    {111, "application/sensml+json"},
    {112, "application/senml+cbor"},
    {113, "application/sensml+cbor"},
    {114, "application/senml-exi"},
    {115, "application/sensml-exi"},
    {256, "application/coap-group+json"},
    {310, "application/senml+xml"},
    {311, "application/sensml+xml"},
    {320, "application/senml-etch+json"},
    {322, "application/senml-etch+cbor"},
    {432, "application/td+json"},
    {11542, "application/vnd.oma.lwm2m+tlv"},
    {11543, "application/vnd.oma.lwm2m+json"},
    {11544, "application/vnd.oma.lwm2m+cbor"},
}};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// text/plain is utf-8 for CoAP; US-ASCII (the HTTP default) is a subset.
bool text_plain_charset_ok(std::string_view params) {
  while (!params.empty()) {
    auto semi = params.find(';');
    std::string_view param = trim(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view{} : params.substr(semi + 1);
    auto eq = param.find('=');
    if (eq == std::string_view::npos) continue;
    if (lower(trim(param.substr(0, eq))) != "charset") continue;
    std::string_view value = trim(param.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    std::string v = lower(value);
    return v == "utf-8" || v == "us-ascii";
  }
  return true;
}

}  // namespace

std::optional<std::string_view> content_format_to_media_type(std::uint16_t cf) {
  for (const auto& e : cf_table) {
    if (e.cf == cf) return e.media_type;
  }
  return std::nullopt;
}

std::optional<std::uint16_t> media_type_to_content_format(std::string_view content_type) {
  auto semi = content_type.find(';');
  std::string type = lower(trim(content_type.substr(0, semi)));
  std::string_view params =
      semi == std::string_view::npos ? std::string_view{} : content_type.substr(semi + 1);
  if (type.empty()) return std::nullopt;
  if (type == "text/plain") {
    if (!text_plain_charset_ok(params)) return std::nullopt;
    return 0;
  }
  for (const auto& e : cf_table) {
    if (e.cf != 0 && e.media_type == type) return e.cf;
  }
  return std::nullopt;
}

std::uint8_t http_status_to_coap(unsigned status, std::string_view method) {
  const bool read = method == "GET" || method == "FETCH";
  switch (status) {
    case 200: case 203: case 206: return read ? coap_code(2, 5) : coap_code(2, 4);
    case 201: return coap_code(2, 1);
    case 304: return coap_code(2, 3);
    case 400: return coap_code(4, 0);
    case 401: return coap_code(4, 1);
    case 403: return coap_code(4, 3);
    case 404: case 410: return coap_code(4, 4);
    case 405: return coap_code(4, 5);
    case 406: return coap_code(4, 6);
    case 409: return coap_code(4, 9);    // RFC 8132
    case 412: return coap_code(4, 12);
    case 413: return coap_code(4, 13);
    case 415: return coap_code(4, 15);
    case 422: return coap_code(4, 22);   // RFC 8132
    case 429: return coap_code(4, 29);   // RFC 8516
    case 500: return coap_code(5, 0);
    case 501: return coap_code(5, 1);
    case 502: return coap_code(5, 2);
    case 503: return coap_code(5, 3);
    case 504: return coap_code(5, 4);
    case 505: return coap_code(5, 1);    // version not supported: the proxy cannot do it
    default: break;
  }
  if (status >= 200 && status < 300) return coap_code(2, 4);  // 202, 204, 205, ...
  if (status >= 400 && status < 500) return coap_code(4, 0);
  if (status >= 500 && status < 600) return coap_code(5, 0);
  // 1xx that reached us, or 3xx: the gateway does not follow redirects, so
  // the upstream gave no usable answer.
  return coap_code(5, 2);
}

namespace {

// RFC 9110 §8.8.3 etagc: %x21 / %x23-7E / obs-text (we keep to ASCII).
bool is_etagc(unsigned char c) { return c == 0x21 || (c >= 0x23 && c <= 0x7e); }

std::string quoted_hex(std::span<const std::byte> tag) {
  std::string out = "\"";
  bytes::append_hex(out, tag);
  out += '"';
  return out;
}

std::optional<std::uint32_t> parse_seconds(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = std::min<std::uint64_t>(v * 10 + static_cast<unsigned>(c - '0'), std::numeric_limits<std::uint32_t>::max());
  }
  return static_cast<std::uint32_t>(v);
}

}  // namespace

std::optional<std::vector<std::byte>> http_etag_to_coap(std::string_view header) {
  std::string_view v = trim(header);
  if (v.starts_with("W/")) v.remove_prefix(2);
  if (v.size() < 2 || v.front() != '"' || v.back() != '"') return std::nullopt;
  v = v.substr(1, v.size() - 2);
  for (char c : v)
    if (!is_etagc(static_cast<unsigned char>(c))) return std::nullopt;
  std::vector<std::byte> out;
  // Lower case only: etag_to_http writes lower case, and an upper-case tag taken as is round-trips
  // in its own spelling.
  if (v.size() >= 2 && v.size() <= 16 && bytes::append_unhex(out, v, bytes::HexCase::lower_only)) return out;
  out.clear();
  if (!v.empty() && v.size() <= 8) {
    for (char c : v) out.push_back(static_cast<std::byte>(c));
    return out;
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  if (EVP_Digest(v.data(), v.size(), digest.data(), &len, EVP_sha256(), nullptr) != 1 || len < 8)
    return std::nullopt;
  for (std::size_t i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(digest[i]));
  return out;
}

std::string etag_to_http(std::span<const std::byte> etag) {
  std::string out = quoted_hex(etag);
  // A tag that http_etag_to_coap took as is (1 to 8 etagc bytes that do not read as hex) is also
  // offered in its own spelling, so the origin server recognises it.
  bool text = !etag.empty();
  for (std::byte b : etag) text = text && is_etagc(std::to_integer<unsigned char>(b));
  if (text) {
    std::string quoted = "\"" + std::string(reinterpret_cast<const char*>(etag.data()), etag.size()) + "\"";
    auto back = http_etag_to_coap(quoted);
    if (back && std::equal(back->begin(), back->end(), etag.begin(), etag.end())) {
      out += ", ";
      out += quoted;
    }
  }
  return out;
}

std::string if_match_to_http(std::span<const std::vector<std::byte>> values) {
  std::string out;
  for (const auto& v : values) {
    if (v.empty()) return "*";
    if (!out.empty()) out += ", ";
    out += etag_to_http(v);
  }
  return out;
}

std::string etags_to_if_none_match(std::span<const std::vector<std::byte>> etags) {
  std::string out;
  for (const auto& v : etags) {
    if (v.empty()) continue;
    if (!out.empty()) out += ", ";
    out += etag_to_http(v);
  }
  return out;
}

std::optional<std::uint32_t> cache_control_max_age(std::string_view header) {
  std::optional<std::uint32_t> out;
  bool never = false;
  while (!header.empty()) {
    auto comma = header.find(',');
    std::string directive = lower(trim(header.substr(0, comma)));
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    if (directive == "no-store" || directive == "no-cache") never = true;
    if (directive.starts_with("max-age=")) {
      std::string_view value = std::string_view(directive).substr(8);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
      if (auto n = parse_seconds(value)) out = n;
    }
  }
  if (never) return 0;
  return out;
}

std::optional<std::uint32_t> retry_after_seconds(std::string_view header) { return parse_seconds(header); }

std::optional<LocationOptions> location_to_options(std::string_view location, std::string_view base_path) {
  std::string_view v = trim(location);
  if (auto hash = v.find('#'); hash != std::string_view::npos) v = v.substr(0, hash);
  if (auto scheme = v.find("://"); scheme != std::string_view::npos && v.find_first_of("/?") > scheme) {
    v.remove_prefix(scheme + 3);
    auto slash = v.find_first_of("/?");
    v = slash == std::string_view::npos ? std::string_view{} : v.substr(slash);
    if (v.empty()) v = "/";
  }
  if (v.empty() || v.front() != '/' || v.starts_with("//")) return std::nullopt;
  auto q = v.find('?');
  std::string_view path = v.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view{} : v.substr(q + 1);
  if (!base_path.empty() && path.starts_with(base_path) &&
      (path.size() == base_path.size() || path[base_path.size()] == '/'))
    path.remove_prefix(base_path.size());
  LocationOptions out;
  out.path = url::split_path(path);
  out.query = url::split_query(query);
  if (out.path.size() + out.query.size() > max_location_options) return std::nullopt;
  for (const auto& seg : out.path)
    if (seg == "." || seg == ".." || seg.size() > 255) return std::nullopt;
  for (const auto& part : out.query)
    if (part.size() > 255) return std::nullopt;
  return out;
}

}  // namespace coapgw::upstream
