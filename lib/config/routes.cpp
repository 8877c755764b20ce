// routes: [...] -> Route structs. Only the form of an upstream is checked
// here; connecting to it is the gateway module's business.
#include <map>

#include "common/url.hpp"
#include "config/sections.hpp"

namespace coapgw::config::detail {

namespace {

// Checks an upstream URL's form; the gateway module owns what it means.
std::optional<std::string> upstream_problem(const std::string& upstream, std::string& scheme) {
  if (upstream.rfind("file:", 0) == 0) {
    scheme = "file";
    if (upstream.size() == 5) return "file: needs a path, e.g. \"file:telemetry.jsonl\"";
    return std::nullopt;
  }
  scheme = std::string(url::scheme_of(upstream));
  if (scheme != "http" && scheme != "https" && scheme != "coap" && scheme != "coaps") {
    return "unsupported upstream " + in_quotes(upstream) +
           " (expected http://, https://, coap://, coaps:// or file:PATH)";
  }
  if (url::parse_server_url(upstream)) return std::nullopt;
  const std::string_view rest = std::string_view(upstream).substr(scheme.size() + 3);
  if (rest.empty() || rest.front() == '/' || rest.front() == ':') return "upstream " + in_quotes(upstream) + " has no host";
  return "upstream " + in_quotes(upstream) +
         " is malformed (expected " + scheme + "://host[:port][/path]: no user, query, fragment or"
         " spaces; port 1-65535)";
}

void parse_route(Reader& r, const YAML::Node& node, const std::string& path, Config& config) {
  if (!node.IsMap()) {
    r.add(path, "expected a map with prefix and upstream");
    return;
  }
  r.map(node, path,
        {"prefix", "upstream", "strip_prefix", "timeout", "max_in_flight", "ca_file", "psk"});
  Route route;
  bool ok = true;
  if (!child(node, "prefix").IsDefined()) {
    r.add(join(path, "prefix"), "is required");
    ok = false;
  } else if (r.string(node, "prefix", path, route.prefix)) {
    if (route.prefix.empty() || route.prefix.front() != '/') {
      r.add(join(path, "prefix"), "must start with \"/\" (got " + in_quotes(route.prefix) + ")");
      ok = false;
    }
  } else {
    ok = false;
  }
  std::string scheme;
  if (!child(node, "upstream").IsDefined()) {
    r.add(join(path, "upstream"), "is required");
    ok = false;
  } else if (r.string(node, "upstream", path, route.upstream)) {
    if (auto problem = upstream_problem(route.upstream, scheme)) {
      r.add(join(path, "upstream"), *problem);
      ok = false;
    }
  } else {
    ok = false;
  }
  r.boolean(node, "strip_prefix", path, route.strip_prefix);
  r.duration(node, "timeout", path, true, route.timeout);
  r.integer(node, "max_in_flight", path, 1, 100'000, route.max_in_flight);
  if (r.string(node, "ca_file", path, route.ca_file) && !route.ca_file.empty()) {
    if (!scheme.empty() && scheme != "https") {
      r.add(join(path, "ca_file"), "only applies to https upstreams");
    }
    check_file_exists(r, config, join(path, "ca_file"), route.ca_file);
  }
  if (child(node, "psk").IsDefined()) {
    if (!scheme.empty() && scheme != "coaps") {
      r.add(join(path, "psk"), "only applies to coaps upstreams");
    }
    if (auto key = parse_psk_entry(r, child(node, "psk"), join(path, "psk"))) {
      route.psk = RoutePsk{std::move(key->identity), std::move(key->key)};
    }
  } else if (scheme == "coaps") {
    r.add(join(path, "psk"), "required for coaps upstreams (identity and key or key_hex)");
  }
  if (ok) config.routes.push_back(std::move(route));
}

}  // namespace

void parse_routes(Reader& r, const YAML::Node& node, Config& config) {
  if (!r.list(node, "routes")) return;
  std::map<std::string, std::size_t> first_at;
  for (std::size_t i = 0; i < node.size(); ++i) {
    auto path = index("routes", i);
    parse_route(r, node[i], path, config);
    const YAML::Node prefix = child(node[i], "prefix");
    if (prefix.IsDefined() && prefix.IsScalar()) {
      // First match wins, so a repeated prefix could never be reached.
      auto [it, inserted] = first_at.emplace(prefix.Scalar(), i);
      if (!inserted) {
        r.add(join(path, "prefix"), "duplicate prefix " + in_quotes(prefix.Scalar()) +
                                        " (first at " + index("routes", it->second) + ")");
      }
    }
  }
}

}  // namespace coapgw::config::detail
