// Internal to lib/config: typed reads from yaml-cpp nodes that never throw and
// never stop at the first problem. Each read records a ConfigIssue with the
// key path and leaves the default in place, so one pass reports everything.
// Only config .cpp files include this (it pulls in yaml-cpp).
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/private_file.hpp"
#include "config/config.hpp"

namespace coapgw::config::detail {

// "" + "threads" -> "threads"; "log" + "level" -> "log.level".
std::string join(const std::string& path, std::string_view key);
std::string index(const std::string& path, std::size_t i);  // "routes" + 1 -> "routes[1]"

// map[key], or an undefined node when `map` is not a map or lacks the key.
// Unlike yaml-cpp's const operator[], the result is always safe to query.
YAML::Node child(const YAML::Node& map, std::string_view key);

// Decodes "0a1B..." into bytes; nullopt for odd length or a non-hex digit.
std::optional<SecretString> decode_hex(std::string_view hex);

class Reader;

std::string in_quotes(std::string_view s);  // "\"" + s + "\"", for values in messages

// Whole file as text, or ConfigError (key path "") naming the file and errno.
SecretString read_file(const std::string& path);
// Same, through private_file::read: type and mode checked on the open descriptor.
SecretString read_private_file(const std::string& path, const private_file::ReadPolicy& policy);
// Secrets: others may not read or change the file (0600, or root:coapgw 0640 as installed),
// checked on the descriptor that is read. A symlink is followed (mounted secrets are links).
// nullopt (with the issue recorded) when it cannot be read.
std::optional<SecretString> read_secrets_file(const std::string& path, std::vector<ConfigIssue>& issues);

// YAML text -> node, or ConfigError (key path "") with 1-based line and column.
YAML::Node load_yaml(std::string_view text);

// Records "file not found" at key_path when `value` is set and does not
// resolve (against the config's directory) to a regular file. Only existence
// is checked: the owning module opens and parses it.
void check_file_exists(Reader& r, const Config& config, const std::string& key_path,
                       const std::string& value);

// Reports listen addresses used twice (port 0 excepted). Shared by the file
// parser (paths "listen.coap[0]") and the command-line overrides ("--coap-listen").
void check_listen_duplicates(Reader& r, const ListenConfig& listen, const std::string& coap_path,
                             const std::string& coaps_path, const std::string& admin_path,
                             bool indexed);

class Reader {
 public:
  void add(std::string key_path, std::string message);
  std::vector<ConfigIssue>& issues() { return issues_; }

  // True when `node` is a map (null/absent counts as an empty map: all
  // defaults). Records "unknown key" and "duplicate key" issues.
  bool map(const YAML::Node& node, const std::string& path,
           std::initializer_list<std::string_view> allowed);
  // True when `node` is a sequence; false (with an issue) for anything else
  // but absent.
  bool list(const YAML::Node& node, const std::string& path);

  // Each reads map[key] when present; on a type or range problem it records
  // an issue and leaves `out` unchanged. Returns true when a value was set.
  bool string(const YAML::Node& map, std::string_view key, const std::string& path,
              std::string& out);
  bool boolean(const YAML::Node& map, std::string_view key, const std::string& path, bool& out);
  bool number(const YAML::Node& map, std::string_view key, const std::string& path, double& out);
  bool integer(const YAML::Node& map, std::string_view key, const std::string& path,
               std::int64_t min, std::int64_t max, std::int64_t& out);
  template <typename T>
  bool integer(const YAML::Node& map, std::string_view key, const std::string& path,
               std::int64_t min, std::int64_t max, T& out) {
    std::int64_t v = static_cast<std::int64_t>(out);
    if (!integer(map, key, path, min, max, v)) return false;
    out = static_cast<T>(v);
    return true;
  }
  // `positive`: zero is an error (a timeout of 0 would fire at once).
  bool duration(const YAML::Node& map, std::string_view key, const std::string& path,
                bool positive, Duration& out);

  // Scalar-only forms, for list items.
  std::optional<std::string> scalar_string(const YAML::Node& node, const std::string& path);

 private:
  std::vector<ConfigIssue> issues_;
};

}  // namespace coapgw::config::detail
