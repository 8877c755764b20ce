// dtls.tickets and its key file: hex secrets, one a line ('#' comments and blank lines allowed),
// each 32..64 bytes, at most 8; the first seals new tickets, all are accepted. The file holds
// secrets: it is read like the PSK keys file (a regular file, a symlink followed, that others may
// not read or write: 0600, or root:coapgw 0640), checked on the descriptor that is read.
#include <cctype>

#include "config/sections.hpp"

namespace coapgw::config::detail {
namespace {

constexpr std::size_t min_secret_bytes = 32;  // dtls::min_ticket_secret_size
constexpr std::size_t max_secret_bytes = 64;  // dtls::max_ticket_secret_size
constexpr std::size_t max_secrets = 8;        // dtls::max_ticket_secrets

std::string_view trimmed(std::string_view line) {
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
  return line;
}

void read_secrets(Reader& r, const std::string& path, std::vector<SecretString>& out) {
  const std::string key = "dtls.tickets.key_file";
  const std::size_t issues_before = r.issues().size();
  SecretString text;
  try {
    text = read_private_file(path, private_file::ReadPolicy{true, 007});
  } catch (const ConfigError& e) {
    for (const auto& issue : e.issues) r.add(key, issue.message);
    return;
  }
  std::string_view rest = text;
  for (std::size_t number = 1; !rest.empty(); ++number) {
    const auto end = rest.find('\n');
    const auto line = trimmed(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (line.empty() || line.front() == '#') continue;
    const std::string where = in_quotes(path) + " line " + std::to_string(number) + ": ";
    auto secret = decode_hex(line);
    if (!secret) {
      r.add(key, where + "not valid hex (even number of 0-9a-f digits)");
    } else if (secret->size() < min_secret_bytes || secret->size() > max_secret_bytes) {
      r.add(key, where + "a secret must be " + std::to_string(min_secret_bytes) + ".." +
                     std::to_string(max_secret_bytes) + " bytes (e.g. openssl rand -hex 32)");
    } else if (out.size() == max_secrets) {
      r.add(key, where + "at most " + std::to_string(max_secrets) + " secrets");
      return;
    } else {
      out.push_back(std::move(*secret));
    }
  }
  if (out.empty() && r.issues().size() == issues_before) r.add(key, in_quotes(path) + ": no secret in the file");
}

}  // namespace

void parse_tickets(Reader& r, const YAML::Node& node, Config& config) {
  auto& out = config.dtls.tickets;
  if (!r.map(node, "dtls.tickets", {"enabled", "key_file", "rotation"}) || !node.IsMap()) return;
  r.boolean(node, "enabled", "dtls.tickets", out.enabled);
  r.string(node, "key_file", "dtls.tickets", out.key_file);
  if (r.duration(node, "rotation", "dtls.tickets", true, out.rotation) &&
      (out.rotation < std::chrono::minutes(1) || out.rotation > std::chrono::hours(24 * 30))) {
    r.add("dtls.tickets.rotation", "must be between 1m and 30d");
  }
  if (out.enabled && !out.key_file.empty()) read_secrets(r, resolve_path(config, out.key_file), out.secrets);
}

}  // namespace coapgw::config::detail
