// Internal to lib/config: section parsers that live in their own .cpp files
// (PSK entries, routes) and are called from parse_config().
#pragma once

#include <memory>
#include <optional>
#include <unordered_map>
#include <string>
#include <vector>

#include "common/key_table.hpp"
#include "config/yaml_reader.hpp"

namespace coapgw::config::detail {

// OpenSSL 3 refuses identities longer than 256 bytes and keys longer than 512;
// we stay well inside both so a key that loads here also loads in the engine.
constexpr std::size_t max_psk_identity_bytes = 128;
constexpr std::size_t max_psk_key_bytes = 256;

// One { identity, key | key_hex } entry, shared by dtls.psk.keys, the keys
// file and routes[].psk. nullopt (with issues recorded) when invalid.
std::optional<PskKey> parse_psk_entry(Reader& r, const YAML::Node& node, const std::string& path);

// A list of PSK entries; duplicate identities are reported at the later one.
std::vector<PskKey> parse_psk_list(Reader& r, const YAML::Node& node, const std::string& path);

// Reads a keys file, collecting issues (key paths like "[1].key_hex") instead
// of throwing, so that the config parser reports them next to its own.
// Returns the valid entries.
std::vector<PskKey> read_psk_keys_file(const std::string& path, std::vector<ConfigIssue>& issues);

// The same file as one compact table (what dtls.psk.keys_file loads): streamed by scan_psk_keys
// when the file is plain, else read by the full reader, whose issues are collected. Never null.
std::shared_ptr<const KeyTable> read_psk_keys_table(const std::string& path, std::vector<ConfigIssue>& issues);

// The fast read of a keys file's text (psk_keys_scan.cpp): the table, or nullptr when the file is
// not one it can vouch for (any problem, or a form it does not read); then use the full reader.
std::shared_ptr<KeyTable> scan_psk_keys(std::string_view text);

// dtls.tickets: { enabled, key_file, rotation } -> config.dtls.tickets, with the key file read and
// decoded (tickets.cpp).
void parse_tickets(Reader& r, const YAML::Node& node, Config& config);

// dtls.psk.lookup and devices (registry.cpp, issue 16).
void parse_psk_lookup(Reader& r, const YAML::Node& node, Config& config);
void parse_devices(Reader& r, const YAML::Node& node, Config& config);

// routes: [...] -> config.routes; also rejects repeated prefixes.
void parse_routes(Reader& r, const YAML::Node& node, Config& config);

// listen.coap_tcp, coaps_tcp, coap_ws, coaps_ws (the caller's parse_address_list reads each list),
// and stream: {...} -> config.stream (stream.cpp).
void parse_stream(Reader& r, const YAML::Node& node, Config& config);

// api: {...} -> config.api, tokens_file included (read and merged here).
void parse_api(Reader& r, const YAML::Node& node, Config& config);

// A list of entries each parsed by `parse_entry(r, node, item_path)` (an
// optional), refusing a repeated key (`key_of(entry)`, named `key_name` in
// the issue, reported at the later entry). Shared by PSK keys and API tokens.
template <typename ParseEntry, typename KeyOf>
auto parse_unique_list(Reader& r, const YAML::Node& node, const std::string& path, std::string_view key_name,
                       ParseEntry parse_entry, KeyOf key_of) {
  using Entry = typename decltype(parse_entry(r, node, path))::value_type;
  std::vector<Entry> out;
  if (!r.list(node, path)) return out;
  std::unordered_map<std::string, std::size_t> first_at;
  for (std::size_t i = 0; i < node.size(); ++i) {
    auto item_path = index(path, i);
    auto entry = parse_entry(r, node[i], item_path);
    if (!entry) continue;
    const std::string key = key_of(*entry);
    if (auto [it, inserted] = first_at.emplace(key, i); !inserted) {
      r.add(join(item_path, key_name), "duplicate " + std::string(key_name) + " " + in_quotes(key) +
                                           " (first at " + index(path, it->second) + ")");
      continue;
    }
    out.push_back(std::move(*entry));
  }
  return out;
}

// Parses the text of a secrets file whose top level is a list, and hands the
// list to `parse_list` with key path "". Issues are collected as
// read_psk_keys_file does.
template <typename T, typename ParseList>
std::vector<T> parse_private_list_text(std::string_view text, std::vector<ConfigIssue>& issues, std::string_view what,
                                       ParseList parse_list) {
  YAML::Node root;
  try {
    root = load_yaml(text);
  } catch (const ConfigError& e) {
    issues.insert(issues.end(), e.issues.begin(), e.issues.end());
    return {};
  }
  Reader r;
  std::vector<T> out;
  if (root.IsDefined() && !root.IsNull() && !root.IsSequence()) {
    r.add("", "expected a list of " + std::string(what) + " at the top level");
  } else {
    out = parse_list(r, root, std::string());
  }
  issues.insert(issues.end(), r.issues().begin(), r.issues().end());
  return out;
}

// Reads a secrets file (mode checked like the PSK keys file) and parses it as
// parse_private_list_text does.
template <typename T, typename ParseList>
std::vector<T> read_private_list_file(const std::string& path, std::vector<ConfigIssue>& issues,
                                      std::string_view what, ParseList parse_list) {
  auto text = read_secrets_file(path, issues);
  if (!text) return {};
  return parse_private_list_text<T>(*text, issues, what, parse_list);
}

// Reports the issues of an included file (keys_file, tokens_file) under the
// config key that names it, so the operator knows which file to open.
void report_file_issues(Reader& r, const std::string& key_path, const std::string& resolved,
                        const std::vector<ConfigIssue>& file_issues);

}  // namespace coapgw::config::detail
