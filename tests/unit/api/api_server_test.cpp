// ApiServer on 127.0.0.1:0 with a fake Downlink, driven by a real HTTP
// client (curl) and, for the bounds, raw sockets: 401, 400, 404, 200, 504,
// 202 + GET + DELETE, 429, 413, connection cap, slow clients.
#include "api/api_server.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <prometheus/counter.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "fake_downlink.hpp"
#include "metrics/metrics.hpp"

namespace coapgw::api {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Mode = test::FakeDownlink::Mode;
using SteadyClock = std::chrono::steady_clock;

struct CurlResult {
  int status = 0;  // 0: no HTTP answer (connection refused, reset or closed)
  std::string body;
};

// Polls `done` until it holds or the deadline passes.
template <typename F>
bool poll_until(F done, std::chrono::milliseconds deadline = 10s) {
  const auto until = SteadyClock::now() + deadline;
  while (SteadyClock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (server) server->stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void start(std::size_t max_connections = 8, std::size_t max_request_bytes = 4096,
             std::chrono::milliseconds request_timeout = 10s) {
    ApiSettings settings;
    settings.listen = *Address::parse("127.0.0.1:0");
    settings.max_connections = max_connections;
    settings.max_request_bytes = max_request_bytes;
    settings.request_timeout = request_timeout;
    settings.queue = {1, 100};
    settings.tokens.resize(1);
    settings.tokens[0].name = "backend";
    settings.tokens[0].token = "change-me";
    server = std::make_unique<ApiServer>(settings, metrics, downlink);
    std::string error;
    ASSERT_TRUE(server->start(&error)) << error;
    base_ = "http://" + server->local_address().to_string();
  }

  // One request with curl; the body goes through a file so any bytes pass.
  CurlResult curl(const std::string& method, const std::string& path, const std::string& body = "",
                  const std::string& token = "change-me") {
    const auto id = std::to_string(counter_++);
    const auto in = dir_ + "/in" + id, out = dir_ + "/out" + id;
    std::ofstream(in, std::ios::binary) << body;
    std::string cmd = "curl -sS --max-time 20 -o " + out + " -w '%{http_code}' -X " + method;
    if (!token.empty()) cmd += " -H 'Authorization: Bearer " + token + "'";
    if (!body.empty()) cmd += " -H 'Content-Type: application/json' --data-binary @" + in;
    cmd += " '" + base_ + path + "' 2>/dev/null";
    CurlResult r;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char buf[16] = {};
      const auto n = std::fread(buf, 1, sizeof buf - 1, p);
      ::pclose(p);
      r.status = std::atoi(std::string(buf, n).c_str());
    }
    std::ifstream f(out, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    r.body = ss.str();
    return r;
  }

  // A TCP connection that sends what it is told and nothing else.
  int raw_connect() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{0, 100 * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_storage ss{};
    const auto len = server->local_address().to_sockaddr(&ss, sizeof ss);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&ss), static_cast<socklen_t>(len)), 0);
    return fd;
  }
  // True once the server closed `fd` (EOF or reset).
  static bool closed_by_server(int fd) {
    return poll_until([fd] {
      char buf[256];
      const auto n = ::recv(fd, buf, sizeof buf, 0);
      return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    });
  }

  metrics::Metrics metrics{"test"};
  test::FakeDownlink downlink;
  std::unique_ptr<ApiServer> server;
  std::string base_;
  std::string dir_ = std::filesystem::temp_directory_path().string() + "/coapgw-api-test-" +
                     std::to_string(::getpid()) + "-" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name();
  int counter_ = 0;
};

const std::string get_x = R"({"method":"GET","path":"/x"})";

TEST_F(ApiServerTest, UnauthorizedSameAnswerForKnownAndUnknownDevices) {
  start();
  downlink.set("known", Mode::answer);
  const auto missing = curl("POST", "/v1/devices/known/requests", get_x, "");
  const auto wrong_known = curl("POST", "/v1/devices/known/requests", get_x, "wrong");
  const auto wrong_unknown = curl("POST", "/v1/devices/unknown/requests", get_x, "wrong");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(wrong_known.status, 401);
  EXPECT_EQ(wrong_unknown.status, 401);
  EXPECT_EQ(wrong_known.body, wrong_unknown.body);
  EXPECT_EQ(missing.body, wrong_unknown.body);
  EXPECT_EQ(downlink.sent_count(), 0u);
}

TEST_F(ApiServerTest, StatusCodes) {
  start();
  downlink.set("dev", Mode::answer);
  downlink.set("slow", Mode::timeout);
  const auto ok = curl("POST", "/v1/devices/dev/requests", R"({"method":"GET","path":"/temp"})");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(json::parse(ok.body)["payload"], "echo /temp");
  EXPECT_EQ(curl("POST", "/v1/devices/slow/requests", get_x).status, 504);
  EXPECT_EQ(curl("POST", "/v1/devices/nobody/requests", get_x).status, 404);
  const auto bad = curl("POST", "/v1/devices/dev/requests", R"({"method":"GET"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(json::parse(bad.body)["error"].get<std::string>().find("\"path\""), std::string::npos);
  EXPECT_EQ(curl("POST", "/v1/devices/dev/requests", "not json").status, 400);
  EXPECT_EQ(curl("POST", "/v1/devices/coap:%5B::1%5D:0/requests", get_x).status, 400);
  EXPECT_EQ(metrics.downlink_requests(metrics::DownlinkOutcome::answered).Value(), 1);
  EXPECT_EQ(metrics.downlink_requests(metrics::DownlinkOutcome::timeout).Value(), 1);
}

TEST_F(ApiServerTest, AnswerFromAnotherThread) {
  start();
  downlink.set("dev", Mode::hold);
  auto pending = std::async(std::launch::async, [&] { return curl("POST", "/v1/devices/dev/requests", get_x); });
  ASSERT_TRUE(poll_until([&] { return downlink.held_count() == 1; }));
  std::thread worker([&] { downlink.answer_held(test::FakeDownlink::answered("from a worker")); });
  worker.join();
  const auto r = pending.get();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["payload"], "from a worker");
}

TEST_F(ApiServerTest, QueueThroughTheListener) {
  start();
  const std::string body = R"({"method":"POST","path":"/cmd","payload":"reboot","queue_for":"1h"})";
  const auto queued = curl("POST", "/v1/devices/sleepy/requests", body);
  ASSERT_EQ(queued.status, 202) << queued.body;
  const auto id = json::parse(queued.body)["id"].get<std::string>();
  EXPECT_EQ(curl("POST", "/v1/devices/sleepy/requests", body).status, 429);  // max 1 per device here
  EXPECT_TRUE(server->has_queued("sleepy"));
  EXPECT_EQ(json::parse(curl("GET", "/v1/devices/sleepy/requests/" + id).body)["state"], "queued");
  const auto cancelled = curl("DELETE", "/v1/devices/sleepy/requests/" + id);
  EXPECT_EQ(cancelled.status, 200);
  EXPECT_EQ(json::parse(cancelled.body)["state"], "cancelled");
  EXPECT_TRUE(poll_until([&] { return !server->has_queued("sleepy"); }));

  // Queued again, then the device is heard from: sent and answered.
  const auto again = curl("POST", "/v1/devices/sleepy/requests", body);
  ASSERT_EQ(again.status, 202);
  const auto id2 = json::parse(again.body)["id"].get<std::string>();
  downlink.set("sleepy", Mode::answer);
  DeviceRef sleepy;
  sleepy.identity = "sleepy";
  ASSERT_TRUE(poll_until([&] { return server->has_queued("sleepy"); }));
  server->device_heard(sleepy);
  ASSERT_TRUE(poll_until([&] {
    return json::parse(curl("GET", "/v1/devices/sleepy/requests/" + id2).body)["state"] == "answered";
  }));
  const auto state = json::parse(curl("GET", "/v1/devices/sleepy/requests/" + id2).body);
  EXPECT_EQ(state["answer"]["payload"], "echo /cmd");
}

TEST_F(ApiServerTest, OversizeBodyIs413) {
  start(8, 2048);
  const std::string big = R"({"method":"POST","path":"/x","payload":")" + std::string(8000, 'a') + "\"}";
  const auto r = curl("POST", "/v1/devices/dev/requests", big);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(metrics.api_rejected(metrics::ApiReject::too_large).Value(), 1);
  EXPECT_EQ(downlink.sent_count(), 0u);
}

TEST_F(ApiServerTest, ConnectionCap) {
  start(2);
  const int a = raw_connect(), b = raw_connect();
  const auto refused = curl("GET", "/v1/devices/x/requests/1");
  EXPECT_EQ(refused.status, 0);
  EXPECT_TRUE(poll_until([&] { return metrics.api_rejected(metrics::ApiReject::connection_limit).Value() >= 1; }));
  ::close(a);
  ::close(b);
  // Once the server has seen them go, requests are served again.
  EXPECT_TRUE(poll_until([&] { return curl("GET", "/v1/devices/x/requests/1").status == 404; }));
}

TEST_F(ApiServerTest, SlowClientIsCutOffAndCounted) {
  start(8, 4096, 300ms);
  const int fd = raw_connect();
  const std::string partial = "POST /v1/devices/x/requests HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL), static_cast<ssize_t>(partial.size()));
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
  EXPECT_TRUE(poll_until([&] { return metrics.api_rejected(metrics::ApiReject::timeout).Value() == 1; }));
}

TEST_F(ApiServerTest, KeepAliveServesRequestsInTurn) {
  start();
  downlink.set("dev", Mode::answer);
  const int fd = raw_connect();
  const std::string body = get_x;
  const std::string one = "POST /v1/devices/dev/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer change-me\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  const std::string two = "GET /v1/devices/dev/requests/9 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer change-me\r\n\r\n";
  const std::string both = one + two;  // pipelined: the second waits for the first answer
  ASSERT_EQ(::send(fd, both.data(), both.size(), MSG_NOSIGNAL), static_cast<ssize_t>(both.size()));
  std::string received;
  ASSERT_TRUE(poll_until([&] {
    char buf[4096];
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) received.append(buf, static_cast<std::size_t>(n));
    return received.find("HTTP/1.1 404") != std::string::npos;
  })) << received;
  const auto first = received.find("HTTP/1.1 200");
  ASSERT_NE(first, std::string::npos) << received;
  EXPECT_LT(first, received.find("HTTP/1.1 404"));
  EXPECT_NE(received.find("echo /x"), std::string::npos);
  ::close(fd);
}

TEST_F(ApiServerTest, ReloadReplacesTokens) {
  start();
  config::ApiConfig api;
  api.tokens.resize(1);
  api.tokens[0].name = "rotated";
  api.tokens[0].token = "new-token";
  server->reload(api);
  EXPECT_TRUE(poll_until([&] { return curl("GET", "/v2", "", "change-me").status == 401; }));
  EXPECT_EQ(curl("GET", "/v2", "", "new-token").status, 404);
}

}  // namespace
}  // namespace coapgw::api
