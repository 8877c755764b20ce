#include "gateway/mapping.hpp"

#include <array>
#include <cctype>
#include <string>
#include <utility>

#include "gateway/forward.hpp"

namespace coapgw::gateway {
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

}  // namespace coapgw::gateway
