// coapgw::config command line — `coapgwd` options and their overrides.
//
// Parsing and overriding live here, not in daemon/, so they are unit-tested;
// the daemon only prints what comes back and picks the exit code. Command-line
// values override the file (DESIGN.md "Command line").
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "config/config.hpp"

namespace coapgw::config {

struct CommandLine {
  std::string config_path;
  bool check_config = false;
  std::optional<unsigned> threads;
  std::optional<std::string> log_level;
  // Each replaces the file's list when given; a single "" disables that listener.
  std::vector<std::string> coap_listen, coaps_listen;
  std::optional<std::string> admin_listen;  // "" disables admin
  bool version = false;
  bool help = false;
  std::string help_text;  // option summary, filled on every successful parse
};

struct CliError {
  std::string message;  // one line, for "coapgwd: <message>" and exit code 1
};

// --config is required unless --version or --help. Unknown options,
// positional arguments and malformed values -> CliError.
std::variant<CommandLine, CliError> parse_command_line(int argc, const char* const* argv);

// Applies the overrides to `config`; bad values throw ConfigError with the
// option as key path (e.g. "--coap-listen").
void apply_overrides(Config& config, const CommandLine& cli);

}  // namespace coapgw::config
