// api.groups (group requests, DESIGN "Downlink"): defaults, every key, and the issues with key paths.
#include <gtest/gtest.h>

#include "config/config.hpp"

namespace coapgw::config {
namespace {

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
