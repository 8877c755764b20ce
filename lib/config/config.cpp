// YAML -> Config, one function per section. Every function records problems
// in the shared Reader and carries on, so parse_config() reports all of them.
#include "config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <unordered_set>

#include "config/sections.hpp"

namespace coapgw::config {

using detail::check_file_exists;
using detail::child;
using detail::in_quotes;
using detail::index;
using detail::join;
using detail::load_yaml;
using detail::parse_psk_list;
using detail::parse_routes;
using detail::read_file;
using detail::read_psk_keys_table;
using detail::Reader;

namespace {

std::string join_issues(const std::vector<ConfigIssue>& issues) {
  std::string out;
  for (const auto& issue : issues) {
    if (!out.empty()) out += '\n';
    if (!issue.key_path.empty()) out += issue.key_path + ": ";
    out += issue.message;
  }
  return out;
}

void parse_log(Reader& r, const YAML::Node& node, LogConfig& out) {
  if (!r.map(node, "log", {"level", "format"})) return;
  std::string text;
  if (r.string(node, "level", "log", text)) {
    if (auto level = log::parse_level(text)) {
      out.level = *level;
    } else {
      r.add("log.level", "unknown level " + in_quotes(text) + " (trace, debug, info, warn, error)");
    }
  }
  if (r.string(node, "format", "log", text)) {
    if (text == "text") {
      out.format = log::Format::text;
    } else if (text == "json") {
      out.format = log::Format::json;
    } else {
      r.add("log.format", "unknown format " + in_quotes(text) + " (text, json)");
    }
  }
}

void parse_address_list(Reader& r, const YAML::Node& map, std::string_view key,
                        std::vector<Address>& out) {
  auto path = join("listen", key);
  const YAML::Node node = child(map, key);
  if (!node.IsDefined()) return;
  out.clear();  // present: replaces the default; [] or null disables the listener
  if (!r.list(node, path)) return;
  for (std::size_t i = 0; i < node.size(); ++i) {
    auto item_path = index(path, i);
    auto text = r.scalar_string(node[i], item_path);
    if (!text) continue;
    if (auto address = Address::parse(*text)) {
      out.push_back(*address);
    } else {
      r.add(item_path, "not an address: " + in_quotes(*text) +
                           " (expected \"1.2.3.4:5683\" or \"[::1]:5683\")");
    }
  }
}

// One address where "" disables the listener (listen.admin, listen.api).
void parse_optional_address(Reader& r, const YAML::Node& map, std::string_view key,
                            std::string_view example_port, std::optional<Address>& out) {
  std::string text;
  if (!r.string(map, key, "listen", text)) return;
  if (text.empty()) {
    out.reset();
  } else if (auto address = Address::parse(text)) {
    out = *address;
  } else {
    const std::string port(example_port);
    r.add(join("listen", key), "not an address: " + in_quotes(text) + " (expected \"1.2.3.4:" + port +
                                   "\", \"[::1]:" + port + "\" or \"\" to disable)");
  }
}

void parse_listen(Reader& r, const YAML::Node& node, ListenConfig& out) {
  if (!r.map(node, "listen", {"coap", "coaps", "admin", "api", "coap_tcp", "coaps_tcp", "coap_ws", "coaps_ws"})) return;
  parse_address_list(r, node, "coap", out.coap);
  parse_address_list(r, node, "coaps", out.coaps);
  parse_optional_address(r, node, "admin", "9683", out.admin);
  parse_optional_address(r, node, "api", "9684", out.api);
  parse_address_list(r, node, "coap_tcp", out.coap_tcp);
  parse_address_list(r, node, "coaps_tcp", out.coaps_tcp);
  parse_address_list(r, node, "coap_ws", out.coap_ws);
  parse_address_list(r, node, "coaps_ws", out.coaps_ws);
}

void parse_dtls(Reader& r, const YAML::Node& node, Config& config) {
  DtlsConfig& out = config.dtls;
  if (!r.map(node, "dtls",
             {"psk", "pki", "ciphers", "handshake_timeout", "max_handshakes", "max_handshakes_per_ip", "handshake_backoff",
              "connection_id", "tickets"}))
    return;
  const YAML::Node psk = child(node, "psk");
  if (psk.IsDefined() && r.map(psk, "dtls.psk", {"hint", "keys", "keys_file", "lookup"}) && psk.IsMap()) {
    r.string(psk, "hint", "dtls.psk", out.psk.hint);
    if (auto keys = child(psk, "keys"); keys.IsDefined()) {
      out.psk.keys = parse_psk_list(r, keys, "dtls.psk.keys");
    }
    r.string(psk, "keys_file", "dtls.psk", out.psk.keys_file);
    detail::parse_psk_lookup(r, child(psk, "lookup"), config);
  }
  if (!out.psk.keys_file.empty()) {
    // The keys file has its own key paths; they are reported under
    // dtls.psk.keys_file so the operator knows which file to open.
    auto resolved = resolve_path(config, out.psk.keys_file);
    std::vector<ConfigIssue> file_issues;
    auto table = read_psk_keys_table(resolved, file_issues);
    detail::report_file_issues(r, "dtls.psk.keys_file", resolved, file_issues);
    for (const auto& k : out.psk.keys) {
      if (table->find(k.identity))
        r.add("dtls.psk.keys_file", "identity " + in_quotes(k.identity) + " in " + in_quotes(resolved) +
                                        " is also in dtls.psk.keys");
    }
    out.psk.file_keys = std::move(table);
  }

  const YAML::Node pki = child(node, "pki");
  if (pki.IsDefined() && r.map(pki, "dtls.pki", {"cert", "private_key", "ca"}) && pki.IsMap()) {
    r.string(pki, "cert", "dtls.pki", out.pki.cert);
    r.string(pki, "private_key", "dtls.pki", out.pki.private_key);
    r.string(pki, "ca", "dtls.pki", out.pki.ca);
  }
  if (out.pki.cert.empty() != out.pki.private_key.empty()) {
    r.add(out.pki.cert.empty() ? "dtls.pki.cert" : "dtls.pki.private_key",
          "dtls.pki.cert and dtls.pki.private_key must be set together");
  }
  // Asking clients for a certificate needs a certificate suite on our side.
  if (!out.pki.ca.empty() && out.pki.cert.empty()) {
    r.add("dtls.pki.ca", "needs dtls.pki.cert and dtls.pki.private_key");
  }
  check_file_exists(r, config, "dtls.pki.cert", out.pki.cert);
  check_file_exists(r, config, "dtls.pki.private_key", out.pki.private_key);
  check_file_exists(r, config, "dtls.pki.ca", out.pki.ca);

  r.string(node, "ciphers", "dtls", out.ciphers);
  r.duration(node, "handshake_timeout", "dtls", true, out.handshake_timeout);
  r.integer(node, "max_handshakes", "dtls", 1, 1'000'000, out.max_handshakes);
  r.integer(node, "max_handshakes_per_ip", "dtls", 0, 1'000'000, out.max_handshakes_per_ip);
  const YAML::Node backoff = child(node, "handshake_backoff");
  if (backoff.IsDefined() &&
      r.map(backoff, "dtls.handshake_backoff", {"after", "initial", "max", "max_addresses"}) && backoff.IsMap()) {
    auto& b = out.handshake_backoff;
    r.integer(backoff, "after", "dtls.handshake_backoff", 0, 1'000'000, b.after);
    r.duration(backoff, "initial", "dtls.handshake_backoff", true, b.initial);
    r.duration(backoff, "max", "dtls.handshake_backoff", true, b.max);
    r.integer(backoff, "max_addresses", "dtls.handshake_backoff", 1, 10'000'000, b.max_addresses);
    if (b.max < b.initial) r.add("dtls.handshake_backoff.max", "must not be shorter than initial");
  }
  const YAML::Node cid = child(node, "connection_id");
  if (cid.IsDefined() && r.map(cid, "dtls.connection_id", {"length", "node_id"}) && cid.IsMap()) {
    auto& c = out.connection_id;
    if (r.integer(cid, "length", "dtls.connection_id", 0, 32, c.length) && c.length != 0 && c.length < 5) {
      r.add("dtls.connection_id.length",
            "must be 0 (never negotiate) or 5..32: node_id, the worker and at least three random "
            "bytes (fewer run out among a worker's sessions)");
    }
    r.integer(cid, "node_id", "dtls.connection_id", 0, 255, c.node_id);
  }
  if (const YAML::Node tickets = child(node, "tickets"); tickets.IsDefined()) detail::parse_tickets(r, tickets, config);
}

void parse_sessions(Reader& r, const YAML::Node& node, SessionsConfig& out) {
  if (!r.map(node, "sessions", {"max", "idle_timeout", "persist"})) return;
  r.integer(node, "max", "sessions", 1, 100'000'000, out.max);
  r.duration(node, "idle_timeout", "sessions", true, out.idle_timeout);
  const YAML::Node persist = child(node, "persist");
  if (persist.IsDefined() && r.map(persist, "sessions.persist", {"file", "max_age"})) {
    r.string(persist, "file", "sessions.persist", out.persist.file);
    r.duration(persist, "max_age", "sessions.persist", true, out.persist.max_age);
  }
}

void parse_shutdown(Reader& r, const YAML::Node& node, ShutdownConfig& out) {
  if (!r.map(node, "shutdown", {"drain_timeout"})) return;
  // 0 is allowed: stop at once without waiting for in-flight forwards.
  r.duration(node, "drain_timeout", "shutdown", false, out.drain_timeout);
}

void parse_coap(Reader& r, const YAML::Node& node, CoapConfig& out) {
  if (!r.map(node, "coap",
             {"ack_timeout", "ack_random_factor", "max_retransmit", "max_message_size",
              "max_body_size", "max_reassemblies", "max_reassemblies_per_session", "max_block_cache_bytes",
              "max_block_answers_per_session", "separate_response_after"}))
    return;
  r.duration(node, "ack_timeout", "coap", true, out.ack_timeout);
  double factor = out.ack_random_factor;
  if (r.number(node, "ack_random_factor", "coap", factor)) {
    // RFC 7252 4.8: ACK_RANDOM_FACTOR MUST NOT be below 1.0.
    if (factor < 1.0 || factor > 10.0) {
      r.add("coap.ack_random_factor", "must be between 1.0 and 10.0");
    } else {
      out.ack_random_factor = factor;
    }
  }
  r.integer(node, "max_retransmit", "coap", 0, 20, out.max_retransmit);
  // 65507 = largest UDP payload over IPv4; 64 leaves room for a header and token.
  r.integer(node, "max_message_size", "coap", 64, 65507, out.max_message_size);
  r.integer(node, "max_body_size", "coap", 1, 64 * 1024 * 1024, out.max_body_size);
  r.integer(node, "max_reassemblies", "coap", 1, 1'000'000, out.max_reassemblies);
  r.integer(node, "max_reassemblies_per_session", "coap", 1, 1'000'000, out.max_reassemblies_per_session);
  r.integer(node, "max_block_cache_bytes", "coap", 0, std::size_t{1} << 40, out.max_block_cache_bytes);
  r.integer(node, "max_block_answers_per_session", "coap", 1, 1'000'000, out.max_block_answers_per_session);
  r.duration(node, "separate_response_after", "coap", true, out.separate_response_after);
}

void parse_admin(Reader& r, const YAML::Node& node, AdminConfig& out) {
  if (!r.map(node, "admin", {"max_connections", "request_timeout", "max_request_bytes"})) return;
  r.integer(node, "max_connections", "admin", 1, 100'000, out.max_connections);
  r.duration(node, "request_timeout", "admin", true, out.request_timeout);
  r.integer(node, "max_request_bytes", "admin", 256, 1024 * 1024, out.max_request_bytes);
}

}  // namespace

namespace detail {

// Two listeners on one address would fail to bind (or, with SO_REUSEPORT,
// silently share packets); port 0 asks the kernel for a fresh port each time.
// UDP and TCP ports are separate: coap and coap+tcp both default to 5683, and
// the admin listener may share a number with a CoAP one.
void check_listen_duplicates(Reader& r, const ListenConfig& listen,
                             const std::string& coap_path, const std::string& coaps_path,
                             const std::string& admin_path, bool indexed) {
  using Seen = std::vector<std::pair<Address, std::string>>;
  Seen udp, tcp;
  auto visit = [&](Seen& seen, const Address& a, const std::string& where) {
    if (a.port() == 0) return;
    for (const auto& [other, other_where] : seen) {
      if (other == a) {
        r.add(where, "duplicate listen address " + a.to_string() + " (also " + other_where + ")");
        return;
      }
    }
    seen.emplace_back(a, where);
  };
  auto visit_list = [&](Seen& seen, const std::vector<Address>& list, const std::string& path, bool with_index) {
    for (std::size_t i = 0; i < list.size(); ++i) visit(seen, list[i], with_index ? index(path, i) : path);
  };
  visit_list(udp, listen.coap, coap_path, indexed);
  visit_list(udp, listen.coaps, coaps_path, indexed);
  if (listen.admin) visit(tcp, *listen.admin, admin_path);
  if (listen.api) visit(tcp, *listen.api, "listen.api");
  visit_list(tcp, listen.coap_tcp, "listen.coap_tcp", true);
  visit_list(tcp, listen.coaps_tcp, "listen.coaps_tcp", true);
  visit_list(tcp, listen.coap_ws, "listen.coap_ws", true);
  visit_list(tcp, listen.coaps_ws, "listen.coaps_ws", true);
}

void report_file_issues(Reader& r, const std::string& key_path, const std::string& resolved,
                        const std::vector<ConfigIssue>& file_issues) {
  for (const auto& issue : file_issues) {
    // Read errors already name the file; entry errors need it added.
    bool names_file = issue.message.find(in_quotes(resolved)) != std::string::npos;
    std::string where = names_file ? "" : in_quotes(resolved) + ": ";
    if (!issue.key_path.empty()) where += issue.key_path + ": ";
    r.add(key_path, where + issue.message);
  }
}

}  // namespace detail

ConfigError::ConfigError(std::vector<ConfigIssue> issues_in)
    : std::runtime_error(join_issues(issues_in)), issues(std::move(issues_in)) {}

std::optional<Duration> parse_duration(std::string_view text) {
  std::size_t unit_at = 0;
  while (unit_at < text.size() &&
         ((text[unit_at] >= '0' && text[unit_at] <= '9') || text[unit_at] == '.'))
    ++unit_at;
  auto number = text.substr(0, unit_at);
  auto unit = text.substr(unit_at);
  if (number.empty() || number.front() == '.' || number.back() == '.') return std::nullopt;
  double factor = 0;
  if (unit == "ms") {
    factor = 1;
  } else if (unit == "s") {
    factor = 1000;
  } else if (unit == "m") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else {
    return std::nullopt;
  }
  double value = 0;
  auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc{} || p != number.data() + number.size()) return std::nullopt;
  double ms = value * factor;
  constexpr double ten_years_ms = 10.0 * 365 * 24 * 3'600'000;
  if (!std::isfinite(ms) || ms > ten_years_ms) return std::nullopt;
  return Duration(std::llround(ms));
}

std::string resolve_path(const Config& config, const std::string& path) {
  if (path.empty() || config.source_path.empty()) return path;
  std::filesystem::path p(path);
  if (p.is_absolute()) return path;
  auto base = std::filesystem::path(config.source_path).parent_path();
  if (base.empty()) return path;
  return (base / p).string();
}

Config parse_config(std::string_view yaml_text, const std::string& source_path) {
  const YAML::Node root = load_yaml(yaml_text);
  Config config;
  config.source_path = source_path;
  if (root.IsDefined() && !root.IsNull() && !root.IsMap()) {
    throw ConfigError(std::vector<ConfigIssue>{{"", "expected a map at the top level"}});
  }
  // An empty document means every default, which is a valid gateway.
  if (!root.IsMap()) return config;
  Reader r;
  r.map(root, "",
        {"threads", "log", "listen", "dtls", "sessions", "shutdown", "coap", "routes", "admin", "api", "devices", "stream"});
  r.integer(root, "threads", "", 0, 1024, config.threads);
  parse_log(r, child(root, "log"), config.log);
  parse_listen(r, child(root, "listen"), config.listen);
  detail::check_listen_duplicates(r, config.listen, "listen.coap", "listen.coaps", "listen.admin",
                                  true);
  parse_dtls(r, child(root, "dtls"), config);
  parse_sessions(r, child(root, "sessions"), config.sessions);
  parse_shutdown(r, child(root, "shutdown"), config.shutdown);
  parse_coap(r, child(root, "coap"), config.coap);
  parse_routes(r, child(root, "routes"), config);
  parse_admin(r, child(root, "admin"), config.admin);
  detail::parse_api(r, child(root, "api"), config);
  detail::parse_devices(r, child(root, "devices"), config);
  detail::parse_stream(r, child(root, "stream"), config);
  if (!r.issues().empty()) throw ConfigError(std::move(r.issues()));
  return config;
}

Config load_config_file(const std::string& path) { return parse_config(read_file(path), path); }

}  // namespace coapgw::config
