// Option registry (RFC 7252 §5.10 table, RFC 7641 §2, RFC 7959 §2.1/§4, RFC 7967 §2, RFC 9175 §2.2/§3.2)
// and the URI rebuild of RFC 7252 §6.5.
#include "coap/option.hpp"

#include <algorithm>
#include <array>

#include "common/bytes.hpp"
#include "common/url.hpp"

namespace coapgw::coap {
namespace {

using F = OptionFormat;
// Sorted by number so lookup is a binary search.
constexpr std::array<OptionInfo, 22> registry{{
    {option::if_match, "If-Match", F::opaque, true, 0, 8},
    {option::uri_host, "Uri-Host", F::string, false, 1, 255},
    {option::etag, "ETag", F::opaque, true, 1, 8},
    {option::if_none_match, "If-None-Match", F::empty, false, 0, 0},
    {option::observe, "Observe", F::uint, false, 0, 3},
    {option::uri_port, "Uri-Port", F::uint, false, 0, 2},
    {option::location_path, "Location-Path", F::string, true, 0, 255},
    {option::uri_path, "Uri-Path", F::string, true, 0, 255},
    {option::content_format, "Content-Format", F::uint, false, 0, 2},
    {option::max_age, "Max-Age", F::uint, false, 0, 4},
    {option::uri_query, "Uri-Query", F::string, true, 0, 255},
    {option::accept, "Accept", F::uint, false, 0, 2},
    {option::location_query, "Location-Query", F::string, true, 0, 255},
    {option::block2, "Block2", F::uint, false, 0, 3},
    {option::block1, "Block1", F::uint, false, 0, 3},
    {option::size2, "Size2", F::uint, false, 0, 4},
    {option::proxy_uri, "Proxy-Uri", F::string, false, 1, 1034},
    {option::proxy_scheme, "Proxy-Scheme", F::string, false, 1, 255},
    {option::size1, "Size1", F::uint, false, 0, 4},
    {option::echo, "Echo", F::opaque, false, 1, 40},
    {option::no_response, "No-Response", F::uint, false, 0, 1},
    {option::request_tag, "Request-Tag", F::opaque, true, 0, 8},
}};

static_assert(std::is_sorted(registry.begin(), registry.end(),
                             [](const OptionInfo& a, const OptionInfo& b) { return a.number < b.number; }));

}  // namespace

const OptionInfo* find_option(std::uint16_t number) {
  const auto it = std::lower_bound(registry.begin(), registry.end(), number,
                                   [](const OptionInfo& o, std::uint16_t n) { return o.number < n; });
  return it != registry.end() && it->number == number ? &*it : nullptr;
}

std::span<const OptionInfo> option_registry() { return registry; }

std::uint32_t decode_uint(std::span<const std::byte> value) {
  // Longer values keep exactly their low 4 bytes.
  return static_cast<std::uint32_t>(bytes::load_be(value));
}

std::optional<std::uint16_t> first_bad_critical_option(const MessageView& message) {
  const auto options = message.option_list();
  for (std::size_t i = 0; i < options.size(); ++i) {
    const OptionView& o = options[i];
    if (!is_critical(o.number)) continue;
    const OptionInfo* info = find_option(o.number);
    if (info == nullptr) return o.number;
    if (o.value.size() < info->min_length || o.value.size() > info->max_length) return o.number;
    // Wire order is sorted, so a repeat is always the immediately preceding option.
    if (!info->repeatable && i > 0 && options[i - 1].number == o.number) return o.number;
  }
  return std::nullopt;
}

std::string uri_path(const MessageView& message) {
  std::string out;
  for (const OptionView& o : message.option_list()) {
    if (o.number != option::uri_path) continue;
    out.push_back('/');
    url::append_segment(out, as_string(o.value));
  }
  if (out.empty()) out = "/";
  return out;
}

std::string uri_query(const MessageView& message) {
  std::string out;
  bool first = true;
  for (const OptionView& o : message.option_list()) {
    if (o.number != option::uri_query) continue;
    if (!first) out.push_back('&');
    first = false;
    url::append_query(out, as_string(o.value));
  }
  return out;
}

}  // namespace coapgw::coap

namespace coapgw::coap {

bool has_unsafe_path_segment(const MessageView& message) {
  for (const OptionView& o : message.option_list()) {
    if (o.number == option::uri_path && url::is_dot_segment_risk(as_string(o.value))) return true;
  }
  return false;
}

}  // namespace coapgw::coap
