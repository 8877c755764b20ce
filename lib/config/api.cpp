// The api: section (backend API, DESIGN "Downlink") and its tokens file.
#include <algorithm>

#include "config/sections.hpp"

namespace coapgw::config {

namespace detail {

namespace {

// A bearer token travels in one header line; 4 KiB is far above any sane token.
constexpr std::size_t max_token_bytes = 4096;
constexpr std::size_t max_token_name_bytes = 128;

// Reads a required, non-empty string member of a list entry; false (issue recorded) otherwise.
bool required_string(Reader& r, const YAML::Node& node, std::string_view key, const std::string& path,
                     std::size_t max_bytes, std::string& out) {
  if (!child(node, key).IsDefined()) {
    r.add(join(path, key), "is required");
    return false;
  }
  if (!r.string(node, key, path, out)) return false;
  if (out.empty()) {
    r.add(join(path, key), "must not be empty");
    return false;
  }
  if (out.size() > max_bytes) {
    r.add(join(path, key), "is longer than " + std::to_string(max_bytes) + " bytes");
    return false;
  }
  return true;
}

std::optional<ApiToken> parse_token_entry(Reader& r, const YAML::Node& node, const std::string& path) {
  if (!node.IsMap()) {
    r.add(path, "expected a map with name and token");
    return std::nullopt;
  }
  r.map(node, path, {"name", "token"});
  ApiToken out;
  const bool named = required_string(r, node, "name", path, max_token_name_bytes, out.name);
  std::string token;
  const bool has_token = required_string(r, node, "token", path, max_token_bytes, token);
  out.token = std::move(token);  // SecretString wipes the moved-from buffer
  if (has_token) {
    for (char c : out.token.view()) {
      // RFC 6750 b64token characters, so the token fits "Authorization: Bearer <token>".
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=';
      if (!ok) {
        r.add(join(path, "token"), "may hold only letters, digits and -._~+/=");
        return std::nullopt;
      }
    }
  }
  if (!named || !has_token) return std::nullopt;
  return out;
}

std::vector<ApiToken> parse_token_list(Reader& r, const YAML::Node& node, const std::string& path) {
  return parse_unique_list(r, node, path, "name", parse_token_entry, [](const ApiToken& t) { return t.name; });
}

std::vector<ApiToken> read_tokens_file(const std::string& path, std::vector<ConfigIssue>& issues) {
  return read_private_list_file<ApiToken>(path, issues, "{ name, token }", parse_token_list);
}

void parse_api_groups(Reader& r, const YAML::Node& node, ApiConfig::Groups& out) {
  if (!r.map(node, "api.groups", {"interface", "hops", "max_responses", "max_in_flight"})) return;
  std::string interface;
  if (r.string(node, "interface", "api.groups", interface) && !interface.empty()) {
    auto address = Address::parse(interface + ":0");
    if (!address) address = Address::parse("[" + interface + "]:0");
    if (!address || address->is_multicast())
      r.add("api.groups.interface", "must be a unicast IP address of this host, like \"127.0.0.1\" or \"::1\"");
    else
      out.interface = *address;
  }
  r.integer(node, "hops", "api.groups", 0, 255, out.hops);
  r.integer(node, "max_responses", "api.groups", 1, 100'000, out.max_responses);
  r.integer(node, "max_in_flight", "api.groups", 1, 10'000, out.max_in_flight);
}

}  // namespace

void parse_api(Reader& r, const YAML::Node& node, Config& config) {
  ApiConfig& out = config.api;
  if (!r.map(node, "api",
             {"tokens", "tokens_file", "max_queued_per_device", "max_queued", "max_connections",
              "request_timeout", "max_request_bytes", "groups"}))
    return;
  if (auto tokens = child(node, "tokens"); tokens.IsDefined()) out.tokens = parse_token_list(r, tokens, "api.tokens");
  r.string(node, "tokens_file", "api", out.tokens_file);
  if (!out.tokens_file.empty()) {
    const auto resolved = resolve_path(config, out.tokens_file);
    std::vector<ConfigIssue> file_issues;
    auto file_tokens = read_tokens_file(resolved, file_issues);
    report_file_issues(r, "api.tokens_file", resolved, file_issues);
    for (auto& t : file_tokens) {
      const bool clash = std::any_of(out.tokens.begin(), out.tokens.end(),
                                     [&](const ApiToken& inline_token) { return inline_token.name == t.name; });
      if (clash) {
        r.add("api.tokens_file", "name " + in_quotes(t.name) + " in " + in_quotes(resolved) +
                                     " is also in api.tokens");
        continue;
      }
      out.tokens.push_back(std::move(t));
    }
  }
  r.integer(node, "max_queued_per_device", "api", 0, 1'000'000, out.max_queued_per_device);
  r.integer(node, "max_queued", "api", 0, 10'000'000, out.max_queued);
  r.integer(node, "max_connections", "api", 1, 100'000, out.max_connections);
  r.duration(node, "request_timeout", "api", true, out.request_timeout);
  r.integer(node, "max_request_bytes", "api", 1024, 16 * 1024 * 1024, out.max_request_bytes);
  if (auto groups = child(node, "groups"); groups.IsDefined()) parse_api_groups(r, groups, out.groups);
}

}  // namespace detail

std::vector<ApiToken> load_api_tokens_file(const std::string& path) {
  std::vector<ConfigIssue> issues;
  auto tokens = detail::read_tokens_file(path, issues);
  if (!issues.empty()) throw ConfigError(std::move(issues));
  return tokens;
}

}  // namespace coapgw::config
