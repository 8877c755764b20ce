// dtls.psk.lookup (the device registry) and devices (per-device policy): issue 16, DESIGN.md
// "Device registry, bans and rate limits".
#include "config/sections.hpp"

namespace coapgw::config::detail {

void parse_psk_lookup(Reader& r, const YAML::Node& node, Config& config) {
  const std::string path = "dtls.psk.lookup";
  auto& out = config.dtls.psk.lookup;
  if (!node.IsDefined() ||
      !r.map(node, path, {"url", "timeout", "cache_ttl", "negative_ttl", "max_in_flight"}) || !node.IsMap())
    return;
  r.string(node, "url", path, out.url);
  r.duration(node, "timeout", path, true, out.timeout);
  r.duration(node, "cache_ttl", path, false, out.cache_ttl);
  r.duration(node, "negative_ttl", path, false, out.negative_ttl);
  r.integer(node, "max_in_flight", path, 1, 100'000, out.max_in_flight);
  if (out.url.empty()) return;
  const std::string_view url = out.url;
  const bool http = url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0;
  const auto authority = url.find("://");
  const auto path_at = url.find('/', authority + 3);
  if (!http) {
    r.add(join(path, "url"), "must start with http:// or https://");
  } else if (path_at == std::string_view::npos || url.find("{identity}", path_at) == std::string_view::npos) {
    r.add(join(path, "url"), "needs {identity} in its path, e.g. http://registry:8000/psk/{identity}");
  }
}

void parse_devices(Reader& r, const YAML::Node& node, Config& config) {
  if (!r.map(node, "devices", {"rate_limit"}) || !node.IsMap()) return;
  const YAML::Node limit = child(node, "rate_limit");
  const std::string path = "devices.rate_limit";
  auto& out = config.devices.rate_limit;
  if (!r.map(limit, path, {"requests_per_second", "burst"}) || !limit.IsMap()) return;
  if (r.number(limit, "requests_per_second", path, out.requests_per_second) &&
      (out.requests_per_second < 0 || out.requests_per_second > 1e6)) {
    r.add(join(path, "requests_per_second"), "must be 0 (unlimited) .. 1000000");
    out.requests_per_second = 0;
  }
  r.integer(limit, "burst", path, 0, 1'000'000, out.burst);
}

}  // namespace coapgw::config::detail
