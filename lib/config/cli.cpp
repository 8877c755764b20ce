// Boost.Program_options stays in this file; callers see CommandLine only.
#include "config/cli.hpp"

#include <boost/program_options.hpp>

#include <charconv>
#include <sstream>

#include "config/yaml_reader.hpp"

namespace coapgw::config {

namespace po = boost::program_options;

namespace {

po::options_description make_options() {
  po::options_description desc("Options");
  desc.add_options()
      ("config,c", po::value<std::string>()->value_name("FILE"), "configuration file (YAML)")
      ("check-config", "validate the configuration, print every error with its key path, exit 0 or 1")
      ("threads", po::value<std::string>()->value_name("N"), "worker threads, 0 = one per core")
      ("log-level", po::value<std::string>()->value_name("L"), "trace|debug|info|warn|error")
      ("coap-listen", po::value<std::vector<std::string>>()->value_name("A:P"),
       "CoAP/UDP listen address, repeatable; replaces listen.coap (\"\" disables)")
      ("coaps-listen", po::value<std::vector<std::string>>()->value_name("A:P"),
       "CoAP/DTLS listen address, repeatable; replaces listen.coaps (\"\" disables)")
      ("admin-listen", po::value<std::string>()->value_name("A:P"),
       "admin HTTP listen address; replaces listen.admin (\"\" disables)")
      ("version", "print the version and exit")
      ("help,h", "print this help and exit");
  return desc;
}

std::string in_quotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Returns false (with an issue) when any entry is not an address.
bool override_list(detail::Reader& r, const std::vector<std::string>& values,
                   const std::string& option, std::vector<Address>& out) {
  if (values.empty()) return false;
  std::vector<Address> parsed;
  bool ok = true;
  // A lone "" is how a shell user says "no listener", as `[]` does in YAML.
  if (!(values.size() == 1 && values.front().empty())) {
    for (const auto& v : values) {
      if (auto a = Address::parse(v)) {
        parsed.push_back(*a);
      } else {
        r.add(option, "not an address: " + in_quotes(v) + " (expected \"1.2.3.4:5683\" or \"[::1]:5683\")");
        ok = false;
      }
    }
  }
  if (ok) out = std::move(parsed);
  return true;
}

}  // namespace

std::variant<CommandLine, CliError> parse_command_line(int argc, const char* const* argv) {
  auto desc = make_options();
  CommandLine cl;
  {
    std::ostringstream help;
    help << "Usage: coapgwd --config FILE [options]\n" << desc;
    cl.help_text = help.str();
  }
  po::variables_map vm;
  try {
    // An empty positional description makes stray arguments an error
    // instead of being silently ignored.
    po::positional_options_description no_positional;
    po::store(po::command_line_parser(argc, argv).options(desc).positional(no_positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return CliError{e.what()};
  }
  cl.check_config = vm.count("check-config") != 0;
  cl.version = vm.count("version") != 0;
  cl.help = vm.count("help") != 0;
  if (vm.count("config")) cl.config_path = vm["config"].as<std::string>();
  if (vm.count("threads")) {
    const auto& text = vm["threads"].as<std::string>();
    unsigned n = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc{} || p != text.data() + text.size()) {
      return CliError{"--threads: expected a number, got " + in_quotes(text)};
    }
    cl.threads = n;
  }
  if (vm.count("log-level")) cl.log_level = vm["log-level"].as<std::string>();
  if (vm.count("coap-listen")) cl.coap_listen = vm["coap-listen"].as<std::vector<std::string>>();
  if (vm.count("coaps-listen")) cl.coaps_listen = vm["coaps-listen"].as<std::vector<std::string>>();
  if (vm.count("admin-listen")) cl.admin_listen = vm["admin-listen"].as<std::string>();
  if (!cl.help && !cl.version && cl.config_path.empty()) {
    return CliError{"--config FILE is required (see --help)"};
  }
  return cl;
}

void apply_overrides(Config& config, const CommandLine& cli) {
  detail::Reader r;
  if (cli.threads) {
    if (*cli.threads > 1024) {
      r.add("--threads", "must be between 0 and 1024 (got " + std::to_string(*cli.threads) + ")");
    } else {
      config.threads = *cli.threads;
    }
  }
  if (cli.log_level) {
    if (auto level = log::parse_level(*cli.log_level)) {
      config.log.level = *level;
    } else {
      r.add("--log-level", "unknown level " + in_quotes(*cli.log_level) + " (trace, debug, info, warn, error)");
    }
  }
  bool coap = override_list(r, cli.coap_listen, "--coap-listen", config.listen.coap);
  bool coaps = override_list(r, cli.coaps_listen, "--coaps-listen", config.listen.coaps);
  if (cli.admin_listen) {
    if (cli.admin_listen->empty()) {
      config.listen.admin.reset();
    } else if (auto a = Address::parse(*cli.admin_listen)) {
      config.listen.admin = *a;
    } else {
      r.add("--admin-listen", "not an address: " + in_quotes(*cli.admin_listen) +
                                  " (expected \"1.2.3.4:9683\", \"[::1]:9683\" or \"\" to disable)");
    }
  }
  if (coap || coaps || cli.admin_listen) {
    detail::check_listen_duplicates(r, config.listen, coap ? "--coap-listen" : "listen.coap",
                                    coaps ? "--coaps-listen" : "listen.coaps",
                                    cli.admin_listen ? "--admin-listen" : "listen.admin", false);
  }
  if (!r.issues().empty()) throw ConfigError(std::move(r.issues()));
}

}  // namespace coapgw::config
