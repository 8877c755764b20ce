#include "config/yaml_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <charconv>
#include <cmath>
#include <set>

#include "common/bytes.hpp"

namespace coapgw::config::detail {

namespace {

// Absent keys and non-maps yield nothing; callers have already reported a
// non-map parent, so this only keeps yaml-cpp from throwing on a bad subscript.
std::optional<YAML::Node> lookup(const YAML::Node& map, std::string_view key) {
  YAML::Node value = child(map, key);
  if (!value.IsDefined()) return std::nullopt;
  return value;
}

}  // namespace

YAML::Node child(const YAML::Node& map, std::string_view key) {
  if (!map.IsDefined() || !map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node value = map[std::string(key)];
  if (!value.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
  return value;
}

std::string join(const std::string& path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return path + "." + std::string(key);
}

std::string index(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::optional<SecretString> decode_hex(std::string_view hex) {
  SecretString out;  // key bytes
  out.reserve(hex.size() / 2);
  if (!bytes::append_unhex(out, hex)) return std::nullopt;
  return out;
}

void Reader::add(std::string key_path, std::string message) {
  issues_.push_back({std::move(key_path), std::move(message)});
}

bool Reader::map(const YAML::Node& node, const std::string& path,
                 std::initializer_list<std::string_view> allowed) {
  if (!node.IsDefined() || node.IsNull()) return true;
  if (!node.IsMap()) {
    add(path, "expected a map");
    return false;
  }
  // yaml-cpp keeps duplicate keys and returns the first on lookup, which
  // would silently ignore the second value; reject instead.
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) {
      add(path, "keys must be plain strings");
      continue;
    }
    const std::string& key = it->first.Scalar();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      add(join(path, key), "unknown key " + in_quotes(key));
    } else if (!seen.insert(key).second) {
      add(join(path, key), "duplicate key " + in_quotes(key));
    }
  }
  return true;
}

bool Reader::list(const YAML::Node& node, const std::string& path) {
  if (!node.IsDefined() || node.IsNull()) return false;
  if (!node.IsSequence()) {
    add(path, "expected a list");
    return false;
  }
  return true;
}

std::optional<std::string> Reader::scalar_string(const YAML::Node& node, const std::string& path) {
  if (node.IsNull()) return std::string();
  if (!node.IsScalar()) {
    add(path, "expected a string");
    return std::nullopt;
  }
  return node.Scalar();
}

bool Reader::string(const YAML::Node& map, std::string_view key, const std::string& path,
                    std::string& out) {
  auto node = lookup(map, key);
  if (!node) return false;
  auto value = scalar_string(*node, join(path, key));
  if (!value) return false;
  out = std::move(*value);
  return true;
}

bool Reader::boolean(const YAML::Node& map, std::string_view key, const std::string& path,
                     bool& out) {
  auto node = lookup(map, key);
  if (!node) return false;
  if (node->IsScalar()) {
    const std::string& s = node->Scalar();
    if (s == "true" || s == "True" || s == "TRUE") {
      out = true;
      return true;
    }
    if (s == "false" || s == "False" || s == "FALSE") {
      out = false;
      return true;
    }
  }
  add(join(path, key), "expected true or false");
  return false;
}

bool Reader::number(const YAML::Node& map, std::string_view key, const std::string& path,
                    double& out) {
  auto node = lookup(map, key);
  if (!node) return false;
  if (node->IsScalar()) {
    const std::string& s = node->Scalar();
    double v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc{} && p == s.data() + s.size() && std::isfinite(v)) {
      out = v;
      return true;
    }
  }
  add(join(path, key), "expected a number");
  return false;
}

bool Reader::integer(const YAML::Node& map, std::string_view key, const std::string& path,
                     std::int64_t min, std::int64_t max, std::int64_t& out) {
  auto node = lookup(map, key);
  if (!node) return false;
  std::int64_t v = 0;
  bool parsed = false;
  if (node->IsScalar()) {
    // Decimal only: yaml-cpp's own conversion reads "010" as octal 8.
    const std::string& s = node->Scalar();
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    parsed = !s.empty() && ec == std::errc{} && p == s.data() + s.size();
  }
  if (!parsed) {
    add(join(path, key), "expected an integer");
    return false;
  }
  if (v < min || v > max) {
    add(join(path, key), "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                             " (got " + std::to_string(v) + ")");
    return false;
  }
  out = v;
  return true;
}

bool Reader::duration(const YAML::Node& map, std::string_view key, const std::string& path,
                      bool positive, Duration& out) {
  auto node = lookup(map, key);
  if (!node) return false;
  std::optional<Duration> d;
  if (node->IsScalar()) d = parse_duration(node->Scalar());
  if (!d) {
    add(join(path, key), "expected a duration with a unit (ms, s, m, h), e.g. \"5s\"");
    return false;
  }
  if (positive && d->count() <= 0) {
    add(join(path, key), "must be greater than 0");
    return false;
  }
  out = *d;
  return true;
}

std::string in_quotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

SecretString read_file(const std::string& path) {
  return read_private_file(path, private_file::ReadPolicy{true, 0});  // config files may carry keys too
}

SecretString read_private_file(const std::string& path, const private_file::ReadPolicy& policy) {
  private_file::ReadError e;
  auto text = private_file::read(path, policy, &e);
  if (!text) {
    throw ConfigError(std::vector<ConfigIssue>{
        {"", e.sys_errno != 0 ? "cannot read " + in_quotes(path) + ": " + std::strerror(e.sys_errno)
                              : in_quotes(path) + ": " + e.reason}});
  }
  return std::move(*text);  // private_file::read refuses anything but a regular file
}

std::optional<SecretString> read_secrets_file(const std::string& path, std::vector<ConfigIssue>& issues) {
  try {
    return read_private_file(path, private_file::ReadPolicy{true, 007});
  } catch (const ConfigError& e) {
    issues.insert(issues.end(), e.issues.begin(), e.issues.end());
    return std::nullopt;
  }
}

YAML::Node load_yaml(std::string_view text) {
  try {
    return YAML::Load(SecretString(text));  // the copy yaml-cpp reads is wiped; its node strings are not ours
  } catch (const YAML::Exception& e) {
    // yaml-cpp marks are 0-based; editors count from 1.
    throw ConfigError(std::vector<ConfigIssue>{
        {"", "YAML syntax error at line " + std::to_string(e.mark.line + 1) + ", column " +
                 std::to_string(e.mark.column + 1) + ": " + e.msg}});
  }
}

void check_file_exists(Reader& r, const Config& config, const std::string& key_path,
                       const std::string& value) {
  if (value.empty()) return;
  std::error_code ec;  // unreadable directories count as "not found", never throw
  auto resolved = resolve_path(config, value);
  if (!std::filesystem::is_regular_file(resolved, ec)) {
    r.add(key_path, "file not found: " + in_quotes(resolved));
  }
}

}  // namespace coapgw::config::detail
