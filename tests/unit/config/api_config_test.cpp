// The api: section and listen.api (DESIGN "Downlink"): defaults, every key,
// the tokens file (same checks as the PSK keys file) and the issues with key paths.
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "temp_dir.hpp"

namespace coapgw::config {
namespace {

using test::TempDir;

std::vector<ConfigIssue> issues_of(const std::string& yaml) {
  try {
    parse_config(yaml);
  } catch (const ConfigError& e) {
    return e.issues;
  }
  return {};
}

bool has(const std::vector<ConfigIssue>& issues, const std::string& path, const std::string& part) {
  for (const auto& i : issues)
    if (i.key_path == path && i.message.find(part) != std::string::npos) return true;
  return false;
}

TEST(ApiConfig, Defaults) {
  const Config c = parse_config("");
  ASSERT_TRUE(c.listen.api.has_value());
  EXPECT_EQ(c.listen.api->to_string(), "127.0.0.1:9684");
  EXPECT_TRUE(c.api.tokens.empty());
  EXPECT_EQ(c.api.tokens_file, "");
  EXPECT_EQ(c.api.max_queued_per_device, 16u);
  EXPECT_EQ(c.api.max_queued, 10000u);
  EXPECT_EQ(c.api.max_connections, 64u);
  EXPECT_EQ(c.api.max_request_bytes, 65536u);
}

TEST(ApiConfig, EveryKey) {
  const Config c = parse_config(
      "listen: { api: \"[::1]:9999\" }\n"
      "api:\n"
      "  tokens: [ { name: backend, token: change-me }, { name: ops, token: \"abc_DEF.1~+/=\" } ]\n"
      "  max_queued_per_device: 3\n  max_queued: 7\n  max_connections: 5\n"
      "  request_timeout: 2s\n  max_request_bytes: 4096\n");
  EXPECT_EQ(c.listen.api->to_string(), "[::1]:9999");
  ASSERT_EQ(c.api.tokens.size(), 2u);
  EXPECT_EQ(c.api.tokens[0].name, "backend");
  EXPECT_EQ(c.api.tokens[0].token, "change-me");
  EXPECT_EQ(c.api.tokens[1].token, "abc_DEF.1~+/=");
  EXPECT_EQ(c.api.max_queued_per_device, 3u);
  EXPECT_EQ(c.api.max_queued, 7u);
  EXPECT_EQ(c.api.max_connections, 5u);
  EXPECT_EQ(c.api.request_timeout, std::chrono::seconds(2));
  EXPECT_EQ(c.api.max_request_bytes, 4096u);
}

TEST(ApiConfig, EmptyListenDisables) {
  EXPECT_FALSE(parse_config("listen: { api: \"\" }\n").listen.api.has_value());
}

TEST(ApiConfig, IssuesHaveKeyPaths) {
  const auto issues = issues_of(
      "listen: { api: \"nope\", admin: \"127.0.0.1:7000\" }\n"
      "api:\n"
      "  tokens: [ { name: a, token: x }, { name: a, token: y }, { name: b, token: \"has space\" },\n"
      "            { token: z }, { name: c, token: \"\" }, { name: d, token: t, extra: 1 } ]\n"
      "  max_queued_per_device: -1\n  request_timeout: 0s\n  max_request_bytes: 10\n  colour: red\n");
  EXPECT_TRUE(has(issues, "listen.api", "not an address")) << issues.size();
  EXPECT_TRUE(has(issues, "api.tokens[1].name", "duplicate name \"a\""));
  EXPECT_TRUE(has(issues, "api.tokens[2].token", "only letters"));
  EXPECT_TRUE(has(issues, "api.tokens[3].name", "is required"));
  EXPECT_TRUE(has(issues, "api.tokens[4].token", "must not be empty"));
  EXPECT_TRUE(has(issues, "api.tokens[5].extra", "unknown key"));
  EXPECT_TRUE(has(issues, "api.max_queued_per_device", ""));
  EXPECT_TRUE(has(issues, "api.request_timeout", ""));
  EXPECT_TRUE(has(issues, "api.max_request_bytes", ""));
  EXPECT_TRUE(has(issues, "api.colour", "unknown key"));
}

TEST(ApiConfig, ListenApiMayNotRepeatAnotherListener) {
  const auto issues = issues_of("listen: { admin: \"127.0.0.1:7000\", api: \"127.0.0.1:7000\" }\n");
  EXPECT_TRUE(has(issues, "listen.api", "duplicate listen address"));
}

TEST(ApiTokensFile, MergedAfterInlineTokensAndReportedUnderItsKey) {
  TempDir dir;
  dir.write("tokens.yaml", "- { name: filed, token: from-file }\n");
  auto path = dir.write("gw.yaml", "api: { tokens: [ { name: inline, token: t1 } ], tokens_file: tokens.yaml }\n");
  const Config c = load_config_file(path);
  ASSERT_EQ(c.api.tokens.size(), 2u);
  EXPECT_EQ(c.api.tokens[1].name, "filed");
  EXPECT_EQ(c.api.tokens[1].token, "from-file");

  dir.write("bad.yaml", "- { name: inline, token: t2 }\n- { name: x }\n");
  auto bad = dir.write("gw2.yaml", "api: { tokens: [ { name: inline, token: t1 } ], tokens_file: bad.yaml }\n");
  try {
    load_config_file(bad);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues.size(), 2u) << e.what();
    for (const auto& issue : e.issues) EXPECT_EQ(issue.key_path, "api.tokens_file");
    EXPECT_NE(std::string(e.what()).find("[1].token: is required"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is also in api.tokens"), std::string::npos) << e.what();
  }
}

TEST(ApiTokensFile, OthersMayNotReadItAndLoadDirectly) {
  TempDir dir;
  auto good = dir.write("t.yaml", "- { name: n, token: secret }\n");
  const auto tokens = load_api_tokens_file(good);
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0].token, "secret");
  auto open = dir.write("open.yaml", "- { name: n, token: secret }\n",
                        std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                            std::filesystem::perms::others_read);
  EXPECT_THROW(load_api_tokens_file(open), ConfigError);
  auto not_list = dir.write("map.yaml", "name: n\n");
  try {
    load_api_tokens_file(not_list);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("{ name, token }"), std::string::npos) << e.what();
  }
}

// api.groups (group requests): defaults, every key, issues with key paths.
TEST(ApiGroupsConfig, Defaults) {
  const Config c = parse_config("");
  EXPECT_FALSE(c.api.groups.interface);
  EXPECT_EQ(c.api.groups.hops, 1u);
  EXPECT_EQ(c.api.groups.max_responses, 256u);
  EXPECT_EQ(c.api.groups.max_in_flight, 16u);
}

TEST(ApiGroupsConfig, EveryKeyAndBothFamilies) {
  Config c = parse_config("api: { groups: { interface: 127.0.0.1, hops: 0, max_responses: 3, max_in_flight: 2 } }\n");
  ASSERT_TRUE(c.api.groups.interface);
  EXPECT_EQ(c.api.groups.interface->ip_string(), "127.0.0.1");
  EXPECT_EQ(c.api.groups.hops, 0u);
  EXPECT_EQ(c.api.groups.max_responses, 3u);
  EXPECT_EQ(c.api.groups.max_in_flight, 2u);
  c = parse_config("api: { groups: { interface: \"::1\" } }\n");
  ASSERT_TRUE(c.api.groups.interface);
  EXPECT_TRUE(c.api.groups.interface->is_v6());
}

TEST(ApiGroupsConfig, IssuesHaveKeyPaths) {
  auto issues = issues_of(
      "api: { groups: { interface: 224.0.1.187, hops: 256, max_responses: 0, max_in_flight: 0, colour: red } }\n");
  EXPECT_TRUE(has(issues, "api.groups.interface", "unicast IP address"));
  EXPECT_TRUE(has(issues, "api.groups.hops", ""));
  EXPECT_TRUE(has(issues, "api.groups.max_responses", ""));
  EXPECT_TRUE(has(issues, "api.groups.max_in_flight", ""));
  EXPECT_TRUE(has(issues, "api.groups.colour", "unknown key"));
  EXPECT_TRUE(has(issues_of("api: { groups: { interface: eth0 } }\n"), "api.groups.interface", "unicast"));
}

}  // namespace
}  // namespace coapgw::config
