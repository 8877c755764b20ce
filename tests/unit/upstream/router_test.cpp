#include "upstream/router.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <filesystem>
#include <fstream>

#include "test_util.hpp"

namespace coapgw::upstream {
namespace {

RouteSpec route(std::string prefix, std::string upstream, bool strip = false) {
  RouteSpec r;
  r.prefix = std::move(prefix);
  r.upstream = std::move(upstream);
  r.strip_prefix = strip;
  return r;
}

class RouterTest : public ::testing::Test {
 protected:
  boost::asio::io_context io_;
  test::TempDir dir_;
  std::string file_upstream() { return "file:" + (dir_.path / "sink.jsonl").string(); }
};

TEST_F(RouterTest, FirstPrefixMatchWinsOnSegmentBoundaries) {
  Router router(io_, {route("/api/special", "coap://127.0.0.1:5783"),
                      route("/api", "http://127.0.0.1:8000"),
                      route("/telemetry", file_upstream())});
  auto m = router.match("/api");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->route->prefix, "/api");
  EXPECT_EQ(m->upstream_path, "/api");

  m = router.match("/api/x/y");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->route->prefix, "/api");

  m = router.match("/api/special/1");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->route->prefix, "/api/special");

  EXPECT_FALSE(router.match("/apix"));
  EXPECT_FALSE(router.match("/ap"));
  EXPECT_FALSE(router.match("/"));
  EXPECT_FALSE(router.match("/other"));
  ASSERT_TRUE(router.match("/telemetry"));
  EXPECT_NE(router.match("/telemetry")->upstream, router.match("/api")->upstream);
}

TEST_F(RouterTest, StripPrefix) {
  Router router(io_, {route("/api", "http://127.0.0.1:8000", true), route("/raw", "http://127.0.0.1:8000")});
  EXPECT_EQ(router.match("/api/v1/x")->upstream_path, "/v1/x");
  EXPECT_EQ(router.match("/api")->upstream_path, "/");
  EXPECT_EQ(router.match("/raw/x")->upstream_path, "/raw/x");
}

TEST_F(RouterTest, RootPrefixMatchesEverything) {
  Router router(io_, {route("/", "http://127.0.0.1:8000", true)});
  ASSERT_TRUE(router.match("/anything/x"));
  EXPECT_EQ(router.match("/anything/x")->upstream_path, "/anything/x");
}

TEST_F(RouterTest, PrefixesListsRoutesInOrder) {
  Router router(io_, {route("/telemetry", file_upstream()), route("/api", "http://127.0.0.1:8000")});
  EXPECT_EQ(router.prefixes(), (std::vector<std::string>{"/telemetry", "/api"}));
}

TEST_F(RouterTest, BadSpecsThrowAtStartup) {
  EXPECT_THROW(Router(io_, {route("api", "http://127.0.0.1:8000")}), std::runtime_error);
  EXPECT_THROW(Router(io_, {route("/api/", "http://127.0.0.1:8000")}), std::runtime_error);
  EXPECT_THROW(Router(io_, {route("/api", "gopher://x")}), std::runtime_error);
  EXPECT_THROW(Router(io_, {route("/api", "http://")}), std::runtime_error);
  EXPECT_THROW(Router(io_, {route("/api", "file:" + (dir_.path / "no" / "x").string())}), std::runtime_error);
  RouteSpec zero = route("/api", "http://127.0.0.1:8000");
  zero.max_in_flight = 0;
  EXPECT_THROW(Router(io_, {zero}), std::runtime_error);
  RouteSpec no_timeout = route("/api", "http://127.0.0.1:8000");
  no_timeout.timeout = std::chrono::milliseconds(0);
  EXPECT_THROW(Router(io_, {no_timeout}), std::runtime_error);
  RouteSpec bad_ca = route("/api", "https://127.0.0.1:8443");
  bad_ca.ca_file = (dir_.path / "missing-ca.pem").string();
  EXPECT_THROW(Router(io_, {bad_ca}), std::runtime_error);
}

TEST_F(RouterTest, CoapsRouteToAClosedPortIsConnectFailed) {
  // A bound-then-closed UDP port: the ClientHello draws ICMP port unreachable, which fails the
  // handshake (and so the queued request) before the route timeout.
  std::uint16_t port = 0;
  {
    boost::asio::ip::udp::socket s(io_, boost::asio::ip::udp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    port = s.local_endpoint().port();
  }
  RouteSpec spec = route("/legacy", "coaps://127.0.0.1:" + std::to_string(port));
  spec.psk_identity = "gw";
  spec.psk_key = "secret";
  Router router(io_, {spec});
  test::Slot slot;
  ForwardRequest req;
  req.method = "GET";
  router.forward(*router.match("/legacy/x"), req, slot.done());
  EXPECT_EQ(slot.calls, 0);
  ASSERT_TRUE(test::run_until(io_, [&] { return slot.response.has_value(); }));
  EXPECT_EQ(slot.calls, 1);
  EXPECT_EQ(slot.response->code, coap_code(5, 2));
  EXPECT_EQ(slot.response->outcome, Outcome::connect_failed);
}

TEST_F(RouterTest, CoapsRouteWithoutPskIsRefused) {
  EXPECT_THROW(Router(io_, {route("/legacy", "coaps://127.0.0.1:5684")}), std::runtime_error);
}

TEST_F(RouterTest, FileRouteWritesTheUpstreamPath) {
  Router router(io_, {route("/telemetry", file_upstream())});
  test::Slot slot;
  ForwardRequest req;
  req.method = "POST";
  req.payload = test::bytes("{\"t\":1}");
  req.content_format = 50;
  router.forward(*router.match("/telemetry/dev1"), req, slot.done());
  ASSERT_TRUE(test::run_until(io_, [&] { return slot.response.has_value(); }));
  EXPECT_EQ(slot.response->code, coap_code(2, 1));
  EXPECT_EQ(slot.calls, 1);
  std::ifstream in(dir_.path / "sink.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  auto obj = test::parse_flat_json(line);
  ASSERT_TRUE(obj) << line;
  EXPECT_EQ((*obj)["path"].value, "/telemetry/dev1");
  EXPECT_EQ((*obj)["payload"].value, "{\"t\":1}");
}

}  // namespace
}  // namespace coapgw::upstream
