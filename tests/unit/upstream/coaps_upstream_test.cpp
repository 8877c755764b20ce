// coaps:// upstreams against a real DTLS peer: libcoap's coap-server-openssl, started per test as a
// subprocess on a free loopback port pair (it serves plain CoAP on PORT and DTLS on PORT+1, PSK key
// from -k, any identity). Skipped when the binary is missing.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <fcntl.h>
#include <string>
#include <vector>

#include "coap/message.hpp"
#include "upstream/coap_upstream.hpp"
#include "upstream/router.hpp"
#include "test_util.hpp"

extern char** environ;

namespace coapgw::upstream {
namespace {

namespace asio = boost::asio;
using udp = asio::ip::udp;

constexpr const char* server_binary = "coap-server-openssl";
constexpr const char* server_key = "upstream-secret";

bool on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    auto end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// True when this process can bind 127.0.0.1:port (so nobody else holds it).
bool udp_port_free(asio::io_context& io, std::uint16_t port) {
  boost::system::error_code ec;
  udp::socket s(io);
  s.open(udp::v4(), ec);
  if (ec) return false;
  s.bind(udp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  return !ec;
}

// True when some socket is bound to 127.0.0.1:port (UDP), read from /proc/net/udp so that probing
// never holds the port the server is about to bind.
bool udp_port_bound(std::uint16_t port) {
  std::ifstream in("/proc/net/udp");
  char want[16];
  std::snprintf(want, sizeof want, ":%04X", port);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local;
    fields >> slot >> local;
    if (local.size() > 5 && local.compare(local.size() - 5, 5, want) == 0) return true;
  }
  return false;
}

// A port P with P and P+1 free on loopback (bounded attempts); 0 if none found.
std::uint16_t free_port_pair(asio::io_context& io) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::uint16_t p = 0;
    {
      udp::socket s(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
      p = s.local_endpoint().port();
    }
    if (p < 65535 && udp_port_free(io, p) && udp_port_free(io, static_cast<std::uint16_t>(p + 1))) return p;
  }
  return 0;
}

// coap-server-openssl -A 127.0.0.1 -p PORT -k KEY, stdout/stderr discarded, killed on destruction.
class LibcoapServer {
 public:
  LibcoapServer(asio::io_context& io, std::uint16_t port) : io_(io), port_(port) {}
  ~LibcoapServer() { stop(); }
  LibcoapServer(const LibcoapServer&) = delete;
  LibcoapServer& operator=(const LibcoapServer&) = delete;

  // Spawns the server and waits (bounded) until its DTLS port is bound.
  bool start() {
    std::vector<std::string> args = {server_binary, "-A", "127.0.0.1", "-p", std::to_string(port_),
                                     "-k", server_key, "-h", "upstream"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawnp(&pid_, server_binary, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (udp_port_bound(dtls_port())) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited early (port taken?)
        pid_ = -1;
        return false;
      }
      io_.restart();
      io_.run_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      io_.restart();
      io_.run_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
  }

  std::uint16_t dtls_port() const { return static_cast<std::uint16_t>(port_ + 1); }

 private:
  asio::io_context& io_;
  std::uint16_t port_;
  pid_t pid_ = -1;
};

class CoapsUpstreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!on_path(server_binary)) GTEST_SKIP() << server_binary << " not installed (libcoap3-bin)";
    port_ = free_port_pair(io_);
    ASSERT_NE(port_, 0) << "no free loopback port pair";
    server_ = std::make_unique<LibcoapServer>(io_, port_);
    ASSERT_TRUE(server_->start()) << "coap-server-openssl did not come up";
  }
  void TearDown() override {
    if (router_) router_->shutdown();
    router_.reset();
    if (server_) server_->stop();
  }

  RouteSpec spec(std::string key = server_key, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    RouteSpec r;
    r.prefix = "/secure";
    r.upstream = "coaps://127.0.0.1:" + std::to_string(server_->dtls_port());
    r.strip_prefix = true;
    r.timeout = timeout;
    r.psk_identity = "coapgw-test";
    r.psk_key = std::move(key);
    return r;
  }

  ForwardResponse forward(const std::string& method, const std::string& path, std::string payload = {}) {
    test::Slot slot;
    ForwardRequest req;
    req.method = method;
    req.payload = test::bytes(payload);
    router_->forward(*router_->match(path), std::move(req), slot.done());
    EXPECT_TRUE(test::run_until(io_, [&] { return slot.response.has_value(); }));
    EXPECT_EQ(slot.calls, 1);
    return slot.response.value_or(ForwardResponse{});
  }

  asio::io_context io_;
  std::uint16_t port_ = 0;
  std::unique_ptr<LibcoapServer> server_;
  std::unique_ptr<Router> router_;
};

TEST_F(CoapsUpstreamTest, GetOverDtlsIsRelayedAndTheConnectionServesFurtherRequests) {
  router_ = std::make_unique<Router>(io_, std::vector<RouteSpec>{spec()});
  auto first = forward("GET", "/secure/time");
  EXPECT_EQ(first.code, coap::code::content);
  EXPECT_EQ(first.outcome, Outcome::ok);
  // libcoap's /time: "Nov 24 16:10:03"
  EXPECT_NE(test::text(first.payload).find(':'), std::string::npos) << test::text(first.payload);
  auto second = forward("GET", "/secure/time");
  EXPECT_EQ(second.code, coap::code::content);
  EXPECT_EQ(second.outcome, Outcome::ok);
}

TEST_F(CoapsUpstreamTest, RequestsQueuedDuringTheHandshakeAllGetAnswers) {
  CoapClientSettings settings;
  settings.max_handshake_queue = 3;
  router_ = std::make_unique<Router>(io_, std::vector<RouteSpec>{spec()}, settings);
  std::vector<test::Slot> slots(4);
  for (auto& slot : slots) {
    ForwardRequest req;
    req.method = "GET";
    router_->forward(*router_->match("/secure/time"), std::move(req), slot.done());
  }
  ASSERT_TRUE(test::run_until(io_, [&] {
    for (auto& s : slots) {
      if (!s.response) return false;
    }
    return true;
  }));
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(slots[i].response->code, coap::code::content) << i;
    EXPECT_EQ(slots[i].response->outcome, Outcome::ok) << i;
  }
  // The fourth found the handshake queue full.
  EXPECT_EQ(slots[3].response->code, coap::code::service_unavailable);
  EXPECT_EQ(slots[3].response->outcome, Outcome::overloaded);
  ASSERT_TRUE(slots[3].response->max_age.has_value());
}

TEST_F(CoapsUpstreamTest, WrongKeyIsConnectFailedBeforeTheRouteTimeout) {
  router_ = std::make_unique<Router>(io_, std::vector<RouteSpec>{spec("not-the-key", std::chrono::seconds(2))});
  auto r = forward("GET", "/secure/time");
  EXPECT_EQ(r.code, coap::code::bad_gateway);
  EXPECT_EQ(r.outcome, Outcome::connect_failed);
}

TEST_F(CoapsUpstreamTest, BlockwiseBothWaysOverDtls) {
  router_ = std::make_unique<Router>(io_, std::vector<RouteSpec>{spec()});
  std::string body;
  for (int i = 0; body.size() < 3000; ++i) body += "line " + std::to_string(i) + "\n";
  auto put = forward("PUT", "/secure/example_data", body);
  EXPECT_EQ(put.code >> 5, 2) << int(put.code);
  auto get = forward("GET", "/secure/example_data");
  EXPECT_EQ(get.code, coap::code::content);
  EXPECT_EQ(test::text(get.payload), body);
}

TEST_F(CoapsUpstreamTest, ReconnectsAfterTheUpstreamRestarts) {
  router_ = std::make_unique<Router>(io_, std::vector<RouteSpec>{spec()});
  EXPECT_EQ(forward("GET", "/secure/time").code, coap::code::content);
  server_->stop();
  // The old connection is gone with the server (close_notify or ICMP): 5.02, not a hang.
  auto down = forward("GET", "/secure/time");
  EXPECT_EQ(down.code, coap::code::bad_gateway);
  ASSERT_TRUE(server_->start()) << "coap-server-openssl did not come back on the same port";
  auto again = forward("GET", "/secure/time");
  EXPECT_EQ(again.code, coap::code::content);
  EXPECT_EQ(again.outcome, Outcome::ok);
}

}  // namespace
}  // namespace coapgw::upstream
