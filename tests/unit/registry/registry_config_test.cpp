#include <gtest/gtest.h>

#include "config/config.hpp"

namespace coapgw::config {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> issue_paths(const std::string& yaml) {
  try {
    parse_config(yaml);
  } catch (const ConfigError& e) {
    std::vector<std::string> paths;
    for (const auto& i : e.issues) paths.push_back(i.key_path);
    return paths;
  }
  return {};
}

TEST(RegistryConfig, DefaultsAreOffAndUnlimited) {
  const auto c = parse_config("");
  EXPECT_TRUE(c.dtls.psk.lookup.url.empty());
  EXPECT_EQ(c.dtls.psk.lookup.timeout, 2s);
  EXPECT_EQ(c.dtls.psk.lookup.cache_ttl, 5min);
  EXPECT_EQ(c.dtls.psk.lookup.negative_ttl, 30s);
  EXPECT_EQ(c.dtls.psk.lookup.max_in_flight, 256u);
  EXPECT_EQ(c.devices.rate_limit.requests_per_second, 0);
  EXPECT_EQ(c.devices.rate_limit.burst, 0u);
}

TEST(RegistryConfig, ValuesAreRead) {
  const auto c = parse_config(R"(
dtls:
  psk:
    lookup: { url: "https://reg:8443/v1/psk/{identity}", timeout: 500ms, cache_ttl: 1m, negative_ttl: 5s, max_in_flight: 8 }
devices:
  rate_limit: { requests_per_second: 2.5, burst: 10 }
)");
  EXPECT_EQ(c.dtls.psk.lookup.url, "https://reg:8443/v1/psk/{identity}");
  EXPECT_EQ(c.dtls.psk.lookup.timeout, 500ms);
  EXPECT_EQ(c.dtls.psk.lookup.cache_ttl, 1min);
  EXPECT_EQ(c.dtls.psk.lookup.negative_ttl, 5s);
  EXPECT_EQ(c.dtls.psk.lookup.max_in_flight, 8u);
  EXPECT_DOUBLE_EQ(c.devices.rate_limit.requests_per_second, 2.5);
  EXPECT_EQ(c.devices.rate_limit.burst, 10u);
}

TEST(RegistryConfig, MistakesNameTheirKey) {
  EXPECT_EQ(issue_paths("dtls: { psk: { lookup: { url: \"ftp://x/{identity}\" } } }"),
            std::vector<std::string>{"dtls.psk.lookup.url"});
  EXPECT_EQ(issue_paths("dtls: { psk: { lookup: { url: \"http://x/psk\" } } }"),
            std::vector<std::string>{"dtls.psk.lookup.url"});
  EXPECT_EQ(issue_paths("dtls: { psk: { lookup: { timeout: 0s } } }"),
            std::vector<std::string>{"dtls.psk.lookup.timeout"});
  EXPECT_EQ(issue_paths("dtls: { psk: { lookup: { max_in_flight: 0 } } }"),
            std::vector<std::string>{"dtls.psk.lookup.max_in_flight"});
  EXPECT_EQ(issue_paths("dtls: { psk: { lookup: { cache: 1 } } }"), std::vector<std::string>{"dtls.psk.lookup.cache"});
  EXPECT_EQ(issue_paths("devices: { rate_limit: { requests_per_second: -1 } }"),
            std::vector<std::string>{"devices.rate_limit.requests_per_second"});
  EXPECT_EQ(issue_paths("devices: { limit: 1 }"), std::vector<std::string>{"devices.limit"});
}

}  // namespace
}  // namespace coapgw::config
