// Internal to lib/config: section parsers that live in their own .cpp files
// (PSK entries, routes) and are called from parse_config().
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/yaml_reader.hpp"

namespace coapgw::config::detail {

// One { identity, key | key_hex } entry, shared by dtls.psk.keys, the keys
// file and routes[].psk. nullopt (with issues recorded) when invalid.
std::optional<PskKey> parse_psk_entry(Reader& r, const YAML::Node& node, const std::string& path);

// A list of PSK entries; duplicate identities are reported at the later one.
std::vector<PskKey> parse_psk_list(Reader& r, const YAML::Node& node, const std::string& path);

// Reads a keys file, collecting issues (key paths like "[1].key_hex") instead
// of throwing, so that the config parser reports them next to its own.
// Returns the valid entries.
std::vector<PskKey> read_psk_keys_file(const std::string& path, std::vector<ConfigIssue>& issues);

// dtls.tickets: { enabled, key_file, rotation } -> config.dtls.tickets, with the key file read and
// decoded (tickets.cpp).
void parse_tickets(Reader& r, const YAML::Node& node, Config& config);

// routes: [...] -> config.routes; also rejects repeated prefixes.
void parse_routes(Reader& r, const YAML::Node& node, Config& config);

}  // namespace coapgw::config::detail
