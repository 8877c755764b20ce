// PSK key entries ({ identity, key | key_hex }) and the keys file.
#include <unordered_map>

#include "config/sections.hpp"

namespace coapgw::config {

namespace detail {

std::optional<PskKey> parse_psk_entry(Reader& r, const YAML::Node& node, const std::string& path) {
  if (!node.IsMap()) {
    r.add(path, "expected a map with identity and key or key_hex");
    return std::nullopt;
  }
  r.map(node, path, {"identity", "key", "key_hex"});
  PskKey out;
  bool ok = true;
  if (!child(node, "identity").IsDefined()) {
    r.add(join(path, "identity"), "is required");
    ok = false;
  } else if (!r.string(node, "identity", path, out.identity)) {
    ok = false;
  } else if (out.identity.empty()) {
    r.add(join(path, "identity"), "must not be empty");
    ok = false;
  } else if (out.identity.size() > max_psk_identity_bytes) {
    r.add(join(path, "identity"),
          "is longer than " + std::to_string(max_psk_identity_bytes) + " bytes");
    ok = false;
  }

  bool has_key = child(node, "key").IsDefined();
  bool has_hex = child(node, "key_hex").IsDefined();
  if (has_key == has_hex) {
    r.add(path, has_key ? "give either key or key_hex, not both" : "needs key or key_hex");
    return std::nullopt;
  }
  std::string key_name = has_key ? "key" : "key_hex";
  SecretString text;
  if (!r.string(node, key_name, path, text)) return std::nullopt;
  if (has_hex) {
    auto bytes = detail::decode_hex(text);
    if (!bytes) {
      r.add(join(path, key_name), "is not valid hex (even number of 0-9a-f digits)");
      return std::nullopt;
    }
    text = std::move(*bytes);
  }
  if (text.empty()) {
    r.add(join(path, key_name), "must not be empty");
    return std::nullopt;
  }
  if (text.size() > max_psk_key_bytes) {
    r.add(join(path, key_name), "is longer than " + std::to_string(max_psk_key_bytes) + " bytes");
    return std::nullopt;
  }
  out.key = std::move(text);
  if (!ok) return std::nullopt;
  return out;
}

std::vector<PskKey> parse_psk_list(Reader& r, const YAML::Node& node, const std::string& path) {
  return parse_unique_list(r, node, path, "identity", parse_psk_entry, [](const PskKey& k) { return k.identity; });
}

namespace {
constexpr std::string_view psk_entry_form = "{ identity, key | key_hex }";
}  // namespace

std::vector<PskKey> read_psk_keys_file(const std::string& path, std::vector<ConfigIssue>& issues) {
  return read_private_list_file<PskKey>(path, issues, psk_entry_form, parse_psk_list);
}

std::shared_ptr<const KeyTable> read_psk_keys_table(const std::string& path, std::vector<ConfigIssue>& issues) {
  auto text = read_secrets_file(path, issues);
  if (!text) return std::make_shared<KeyTable>();
  if (auto table = scan_psk_keys(*text)) return table;
  // Not plain enough for the scan: the full reader words every problem (and reads what is fine).
  auto keys = parse_private_list_text<PskKey>(*text, issues, psk_entry_form, parse_psk_list);
  auto table = std::make_shared<KeyTable>();
  table->reserve(keys.size());
  for (const auto& k : keys) table->insert(k.identity, k.key);
  table->shrink_to_fit();
  return table;
}

}  // namespace detail

std::vector<PskKey> load_psk_keys_file(const std::string& path) {
  std::vector<ConfigIssue> issues;
  auto keys = detail::read_psk_keys_file(path, issues);
  if (!issues.empty()) throw ConfigError(std::move(issues));
  return keys;
}

}  // namespace coapgw::config
