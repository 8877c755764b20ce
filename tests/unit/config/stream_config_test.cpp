// The RFC 8323 listeners (listen.coap_tcp ...) and the stream: section: defaults, every key, bounds
// and the issues with key paths.
#include <gtest/gtest.h>

#include "config/config.hpp"

namespace coapgw::config {
namespace {

using namespace std::chrono_literals;

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

TEST(StreamConfig, DefaultsServeNoStreamListener) {
  const Config c = parse_config("");
  EXPECT_TRUE(c.listen.coap_tcp.empty());
  EXPECT_TRUE(c.listen.coaps_tcp.empty());
  EXPECT_TRUE(c.listen.coap_ws.empty());
  EXPECT_TRUE(c.listen.coaps_ws.empty());
  EXPECT_EQ(c.stream.max_connections, 10000u);
  EXPECT_EQ(c.stream.max_in_flight, 32u);
  EXPECT_EQ(c.stream.csm_timeout, 10s);
  EXPECT_EQ(c.stream.frame_timeout, 10s);
  EXPECT_EQ(c.stream.max_write_queue, 262144u);
  EXPECT_EQ(c.stream.write_timeout, 10s);
}

TEST(StreamConfig, EveryKey) {
  const Config c = parse_config(
      "listen: { coap: [\"127.0.0.1:5683\"], coap_tcp: [\"127.0.0.1:5683\", \"[::1]:5683\"] }\n"
      "stream: { max_connections: 50, max_in_flight: 4, csm_timeout: 2s, frame_timeout: 3s,\n"
      "          max_write_queue: 8192, write_timeout: 1s }\n");
  ASSERT_EQ(c.listen.coap_tcp.size(), 2u);  // the same address as listen.coap: another protocol
  EXPECT_EQ(c.listen.coap_tcp[1].to_string(), "[::1]:5683");
  EXPECT_EQ(c.stream.max_connections, 50u);
  EXPECT_EQ(c.stream.max_in_flight, 4u);
  EXPECT_EQ(c.stream.csm_timeout, 2s);
  EXPECT_EQ(c.stream.frame_timeout, 3s);
  EXPECT_EQ(c.stream.max_write_queue, 8192u);
  EXPECT_EQ(c.stream.write_timeout, 1s);
}

TEST(StreamConfig, IssuesNameTheirKeys) {
  const auto issues = issues_of(
      "listen: { coap_tcp: [\"127.0.0.1:7000\", \"127.0.0.1:7000\"] }\n"
      "stream: { max_connections: 0, csm_timeout: 0s, bogus: 1, max_write_queue: 10 }\n");
  EXPECT_TRUE(has(issues, "listen.coap_tcp[1]", "duplicate listen address"));
  EXPECT_TRUE(has(issues_of("listen: { coap_tcp: [\"nope\"] }\n"), "listen.coap_tcp[0]", "not an address"));
  EXPECT_TRUE(has(issues, "stream.max_connections", ""));
  EXPECT_TRUE(has(issues, "stream.csm_timeout", ""));
  EXPECT_TRUE(has(issues, "stream.bogus", ""));
  EXPECT_TRUE(has(issues, "stream.max_write_queue", ""));
}

}  // namespace
}  // namespace coapgw::config
