// Command line: parsing, errors, and overrides on top of the file.
#include <gtest/gtest.h>

#include <initializer_list>

#include "config/cli.hpp"

namespace coapgw::config {
namespace {

std::variant<CommandLine, CliError> parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv{"coapgwd"};
  argv.insert(argv.end(), args.begin(), args.end());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

CommandLine parse_ok(std::initializer_list<const char*> args) {
  auto result = parse(args);
  if (auto* err = std::get_if<CliError>(&result)) {
    ADD_FAILURE() << err->message;
    return {};
  }
  return std::get<CommandLine>(result);
}

std::string parse_error(std::initializer_list<const char*> args) {
  auto result = parse(args);
  if (auto* err = std::get_if<CliError>(&result)) return err->message;
  ADD_FAILURE() << "expected a CliError";
  return {};
}

TEST(Cli, ConfigOnly) {
  auto cl = parse_ok({"--config", "gw.yaml"});
  EXPECT_EQ(cl.config_path, "gw.yaml");
  EXPECT_FALSE(cl.check_config);
  EXPECT_FALSE(cl.threads);
  EXPECT_FALSE(cl.log_level);
  EXPECT_TRUE(cl.coap_listen.empty());
  EXPECT_FALSE(cl.admin_listen);
  EXPECT_FALSE(cl.version);
  EXPECT_FALSE(cl.help);
  EXPECT_NE(cl.help_text.find("--check-config"), std::string::npos);
}

TEST(Cli, CheckConfigFlag) {
  auto cl = parse_ok({"--check-config", "--config=gw.yaml"});
  EXPECT_TRUE(cl.check_config);
  EXPECT_EQ(cl.config_path, "gw.yaml");
}

TEST(Cli, AllOptions) {
  auto cl = parse_ok({"-c", "gw.yaml", "--threads", "3", "--log-level", "debug", "--coap-listen",
                      "127.0.0.1:1", "--coap-listen", "[::1]:2", "--coaps-listen", "127.0.0.1:3",
                      "--admin-listen", "127.0.0.1:4"});
  EXPECT_EQ(cl.config_path, "gw.yaml");
  EXPECT_EQ(cl.threads, 3u);
  EXPECT_EQ(cl.log_level, "debug");
  EXPECT_EQ(cl.coap_listen, (std::vector<std::string>{"127.0.0.1:1", "[::1]:2"}));
  EXPECT_EQ(cl.coaps_listen, (std::vector<std::string>{"127.0.0.1:3"}));
  EXPECT_EQ(cl.admin_listen, "127.0.0.1:4");
}

TEST(Cli, VersionAndHelpNeedNoConfig) {
  EXPECT_TRUE(parse_ok({"--version"}).version);
  auto help = parse_ok({"--help"});
  EXPECT_TRUE(help.help);
  EXPECT_NE(help.help_text.find("--config"), std::string::npos);
  EXPECT_TRUE(parse_ok({"-h"}).help);
}

TEST(Cli, Errors) {
  EXPECT_NE(parse_error({}).find("--config"), std::string::npos);
  EXPECT_NE(parse_error({"--check-config"}).find("--config"), std::string::npos);
  EXPECT_NE(parse_error({"--config", "x", "--bogus"}).find("bogus"), std::string::npos);
  EXPECT_FALSE(parse_error({"--config", "x", "stray"}).empty());
  EXPECT_FALSE(parse_error({"--config"}).empty());
  EXPECT_NE(parse_error({"--config", "x", "--threads", "many"}).find("--threads"), std::string::npos);
  EXPECT_NE(parse_error({"--config", "x", "--threads", "-1"}).find("--threads"), std::string::npos);
  EXPECT_FALSE(parse_error({"--config", "x", "--config", "y"}).empty());
}

TEST(CliOverrides, ReplaceFileValues) {
  Config c = parse_config("threads: 2\nlog: { level: warn }\n");
  auto cl = parse_ok({"--config", "x", "--threads", "8", "--log-level", "trace", "--coap-listen",
                      "127.0.0.1:15683", "--coap-listen", "[::1]:15683", "--admin-listen", ""});
  apply_overrides(c, cl);
  EXPECT_EQ(c.threads, 8u);
  EXPECT_EQ(c.log.level, log::Level::trace);
  ASSERT_EQ(c.listen.coap.size(), 2u);
  EXPECT_EQ(c.listen.coap[0].to_string(), "127.0.0.1:15683");
  EXPECT_EQ(c.listen.coap[1].to_string(), "[::1]:15683");
  ASSERT_EQ(c.listen.coaps.size(), 1u);  // untouched
  EXPECT_EQ(c.listen.coaps[0].to_string(), "127.0.0.1:5684");
  EXPECT_FALSE(c.listen.admin.has_value());
}

TEST(CliOverrides, EmptyListenDisables) {
  Config c;
  apply_overrides(c, parse_ok({"--config", "x", "--coaps-listen", ""}));
  EXPECT_TRUE(c.listen.coaps.empty());
  EXPECT_EQ(c.listen.coap.size(), 1u);
}

TEST(CliOverrides, NothingGivenChangesNothing) {
  Config c = parse_config("threads: 2\n");
  apply_overrides(c, parse_ok({"--config", "x"}));
  EXPECT_EQ(c.threads, 2u);
  EXPECT_EQ(c.listen.coap.size(), 1u);
}

TEST(CliOverrides, BadValuesReportTheOption) {
  Config c;
  auto cl = parse_ok({"--config", "x", "--threads", "5000", "--log-level", "loud", "--coap-listen",
                      "nowhere", "--admin-listen", "127.0.0.1"});
  try {
    apply_overrides(c, cl);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("--threads: must be between 0 and 1024"), std::string::npos) << what;
    EXPECT_NE(what.find("--log-level: unknown level \"loud\""), std::string::npos) << what;
    EXPECT_NE(what.find("--coap-listen: not an address: \"nowhere\""), std::string::npos) << what;
    EXPECT_NE(what.find("--admin-listen: not an address"), std::string::npos) << what;
    EXPECT_EQ(e.issues.size(), 4u) << what;
  }
}

TEST(CliOverrides, DuplicateWithFileListener) {
  Config c;  // coaps defaults to 127.0.0.1:5684
  try {
    apply_overrides(c, parse_ok({"--config", "x", "--coap-listen", "127.0.0.1:5684"}));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues.size(), 1u) << e.what();
    EXPECT_EQ(e.issues[0].key_path, "listen.coaps");
    EXPECT_NE(e.issues[0].message.find("also --coap-listen"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace coapgw::config
