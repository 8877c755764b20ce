// Tests for AdminServer on loopback port 0 with a raw-socket HTTP client:
// routes, readiness, paging through a fake asynchronous lister, and every
// bound (request size, connection cap, slow clients, lister timeout).
#include "admin/admin_server.hpp"

#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "metrics/metrics.hpp"

namespace coapgw::admin {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct HttpResponse {
  int status = 0;
  std::string headers;        // as received
  std::string lower_headers;  // for case-insensitive name lookup
  std::string body;
  // `name` in lower case; returns the value as sent.
  std::string header(const std::string& name) const {
    const auto key = "\r\n" + name + ": ";
    const auto at = lower_headers.find(key);
    if (at == std::string::npos) return {};
    const auto start = at + key.size();
    return headers.substr(start, headers.find("\r\n", start) - start);
  }
};

// Minimal blocking HTTP/1.1 client; every read is bounded by SO_RCVTIMEO.
class Client {
 public:
  explicit Client(const Address& server) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{0, 200 * 1000};  // short, so wait loops can watch their own deadline
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_storage ss{};
    const auto len = server.to_sockaddr(&ss, sizeof ss);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&ss), static_cast<socklen_t>(len)) == 0;
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool send(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      const auto n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Reads one response (Content-Length framed). nullopt on close/timeout.
  std::optional<HttpResponse> read_response(bool head = false,
                                            Clock::duration timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    std::size_t header_end;
    while ((header_end = pending_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(deadline)) return std::nullopt;
    HttpResponse r;
    r.headers = pending_.substr(0, header_end + 2);
    r.lower_headers = r.headers;
    for (auto& c : r.lower_headers)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (r.headers.compare(0, 9, "HTTP/1.1 ") != 0) return std::nullopt;
    r.status = std::stoi(r.headers.substr(9, 3));
    pending_.erase(0, header_end + 4);
    const std::string length = r.header("content-length");
    const std::size_t body_size = head || length.empty() ? 0 : std::stoul(length);
    while (pending_.size() < body_size)
      if (!fill(deadline)) return std::nullopt;
    r.body = pending_.substr(0, body_size);
    pending_.erase(0, body_size);
    return r;
  }
  // True once the server closed the connection (EOF or reset) before the deadline.
  bool wait_closed(Clock::duration timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      char buf[512];
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    }
    return false;
  }

 private:
  bool fill(Clock::time_point deadline) {
    while (Clock::now() < deadline) {
      char buf[4096];
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        pending_.append(buf, static_cast<std::size_t>(n));
        return true;
      }
      if (n == 0) return false;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    }
    return false;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

std::string request(const std::string& method, const std::string& target, bool close = true) {
  return method + " " + target + " HTTP/1.1\r\nHost: test\r\n" +
         (close ? "Connection: close\r\n" : "") + "\r\n";
}

std::optional<HttpResponse> fetch(const Address& server, const std::string& target,
                                  const std::string& method = "GET") {
  Client c(server);
  if (!c.connected() || !c.send(request(method, target))) return std::nullopt;
  return c.read_response(method == "HEAD");
}

// Stands in for the workers: answers lister calls from its own thread, the
// way a real worker would after a post.
class FakeWorkers {
 public:
  explicit FakeWorkers(std::vector<SessionInfo> sessions) : sessions_(std::move(sessions)) {
    thread_ = std::thread([this] { run(); });
  }
  ~FakeWorkers() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  SessionLister lister() {
    return [this](std::uint64_t after, std::size_t limit,
                  std::function<void(std::vector<SessionInfo>)> done) {
      {
        std::lock_guard lock(mutex_);
        calls_.push_back(limit);
        queue_.push_back([this, after, limit, done = std::move(done)] {
          std::vector<SessionInfo> page;
          for (const auto& s : sessions_)
            if (s.id > after && page.size() < limit) page.push_back(s);
          done(std::move(page));
        });
        // Under the lock: the test's FakeWorkers may be destroyed as soon as the answer is out
        // (ThreadSanitizer saw the admin thread signal cv_ while ~FakeWorkers destroyed it).
        cv_.notify_one();
      }
    };
  }
  std::vector<std::size_t> limits_asked() {
    std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      auto job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }
  const std::vector<SessionInfo> sessions_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::size_t> calls_;
  bool stop_ = false;
  std::thread thread_;
};

std::vector<SessionInfo> make_sessions(std::size_t n) {
  std::vector<SessionInfo> v;
  for (std::size_t i = 1; i <= n; ++i) {
    SessionInfo s;
    s.id = i * 10;
    s.proto = "dtls";
    s.type = "server";
    s.state = "established";
    s.remote = "127.0.0.1:" + std::to_string(40000 + i);
    s.local = "127.0.0.1:5684";
    s.identity = "device-" + std::to_string(i);
    v.push_back(s);
  }
  return v;
}

AdminSettings loopback_settings() {
  AdminSettings s;
  s.listen = *Address::parse("127.0.0.1:0");
  return s;
}

bool eventually(const std::function<bool()>& condition, Clock::duration timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);  // polling interval, not synchronisation
  }
  return condition();
}

class AdminServerTest : public ::testing::Test {
 protected:
  void start(AdminSettings settings, SessionLister lister) {
    server_ = std::make_unique<AdminServer>(std::move(settings), metrics_, std::move(lister));
    std::string error;
    ASSERT_TRUE(server_->start(&error)) << error;
    addr_ = server_->local_address();
    ASSERT_NE(addr_.port(), 0);
  }
  void TearDown() override {
    if (server_) server_->stop();
  }
  metrics::Metrics metrics_{"test"};
  std::unique_ptr<AdminServer> server_;
  Address addr_;
};

TEST_F(AdminServerTest, RoutesAnswer) {
  FakeWorkers workers(make_sessions(2));
  start(loopback_settings(), workers.lister());

  auto r = fetch(addr_, "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok\n");

  r = fetch(addr_, "/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->header("content-type").find("version=0.0.4"), std::string::npos);
  EXPECT_NE(r->body.find("# TYPE coapgw_sessions gauge"), std::string::npos);
  EXPECT_NE(r->body.find("coapgw_build_info{version=\"test\"} 1"), std::string::npos);

  r = fetch(addr_, "/v1/sessions");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("content-type"), "application/json");
  EXPECT_NE(r->body.find("\"identity\":\"device-2\""), std::string::npos);
  EXPECT_NE(r->body.find("\"next_cursor\":null"), std::string::npos);

  r = fetch(addr_, "/nope");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = fetch(addr_, "/metrics/extra");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);

  for (const char* method : {"POST", "DELETE", "PUT"}) {
    r = fetch(addr_, "/metrics", method);
    ASSERT_TRUE(r) << method;
    EXPECT_EQ(r->status, 405) << method;
    EXPECT_EQ(r->header("allow"), "GET, HEAD") << method;
  }

  r = fetch(addr_, "/v1/sessions?limit=abc");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("\"error\":"), std::string::npos);
}

TEST_F(AdminServerTest, ReadyzFollowsSetReady) {
  start(loopback_settings(), {});
  auto r = fetch(addr_, "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);  // starts not ready
  server_->set_ready(true);
  r = fetch(addr_, "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ready\n");
  server_->set_ready(false);  // draining
  r = fetch(addr_, "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
}

TEST_F(AdminServerTest, KeepAliveAndHead) {
  start(loopback_settings(), {});
  Client c(addr_);
  ASSERT_TRUE(c.connected());
  // HEAD gives the GET headers and no body; the next response on the same
  // connection must parse cleanly, which fails if a body was sent.
  ASSERT_TRUE(c.send(request("HEAD", "/healthz", false)));
  auto r = c.read_response(/*head=*/true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("content-length"), "3");
  ASSERT_TRUE(c.send(request("GET", "/healthz", false)));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok\n");
  // Pipelined requests are answered in order.
  ASSERT_TRUE(c.send(request("GET", "/readyz", false) + request("GET", "/healthz", true)));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(c.wait_closed());  // Connection: close honoured
}

TEST_F(AdminServerTest, SessionsArePagedWithCursor) {
  FakeWorkers workers(make_sessions(7));  // ids 10..70
  start(loopback_settings(), workers.lister());
  std::vector<std::string> pages;
  std::string cursor;
  for (int page = 0; page < 5; ++page) {
    auto r = fetch(addr_, "/v1/sessions?limit=3" + (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    pages.push_back(r->body);
    const auto at = r->body.find("\"next_cursor\":");
    ASSERT_NE(at, std::string::npos);
    const std::string next = r->body.substr(at + 14);
    if (next.rfind("null", 0) == 0) break;
    cursor = next.substr(1, next.find('"', 1) - 1);
  }
  ASSERT_EQ(pages.size(), 3u);
  EXPECT_NE(pages[0].find("\"id\":10,"), std::string::npos);
  EXPECT_NE(pages[0].find("\"id\":30,"), std::string::npos);
  EXPECT_NE(pages[0].find("\"next_cursor\":\"30\""), std::string::npos);
  EXPECT_EQ(pages[1].find("\"id\":30,"), std::string::npos);
  EXPECT_NE(pages[1].find("\"id\":40,"), std::string::npos);
  EXPECT_NE(pages[1].find("\"id\":60,"), std::string::npos);
  EXPECT_NE(pages[1].find("\"next_cursor\":\"60\""), std::string::npos);
  EXPECT_NE(pages[2].find("\"id\":70,"), std::string::npos);
  EXPECT_NE(pages[2].find("\"next_cursor\":null"), std::string::npos);

  // limit is clamped, and the workers are asked for one extra entry.
  auto r = fetch(addr_, "/v1/sessions?limit=5000");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  const auto limits = workers.limits_asked();
  ASSERT_FALSE(limits.empty());
  EXPECT_EQ(limits.front(), 4u);
  EXPECT_EQ(limits.back(), 1001u);
}

TEST_F(AdminServerTest, OversizedRequestGets413) {
  AdminSettings settings = loopback_settings();
  settings.max_request_bytes = 1024;
  start(settings, {});
  Client c(addr_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(4000, 'a') +
                     "\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(c.wait_closed());

  Client body(addr_);
  ASSERT_TRUE(body.connected());
  ASSERT_TRUE(body.send("POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n" +
                        std::string(5000, 'b')));
  r = body.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_GE(metrics_.admin_rejected(metrics::AdminReject::too_large).Value(), 2.0);

  // A request within the bound still works.
  r = fetch(addr_, "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(AdminServerTest, ConnectionCapClosesExtraConnections) {
  AdminSettings settings = loopback_settings();
  settings.max_connections = 2;
  start(settings, {});
  Client a(addr_), b(addr_);
  // A full keep-alive exchange proves each one is accepted and held open.
  for (Client* c : {&a, &b}) {
    ASSERT_TRUE(c->send(request("GET", "/healthz", false)));
    auto r = c->read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  Client third(addr_);
  EXPECT_TRUE(third.wait_closed());
  EXPECT_TRUE(eventually([&] { return server_->rejected_connections() == 1; }));
  EXPECT_EQ(metrics_.admin_rejected(metrics::AdminReject::connection_limit).Value(), 1.0);

  // The held connections still work, and once one leaves a newcomer gets in.
  ASSERT_TRUE(a.send(request("GET", "/healthz", false)));
  ASSERT_TRUE(a.read_response());
  a.close();
  EXPECT_TRUE(eventually([&] {
    auto r = fetch(addr_, "/healthz");
    return r && r->status == 200;
  }));
}

TEST_F(AdminServerTest, SlowClientDoesNotBlockOthersAndIsCutOff) {
  AdminSettings settings = loopback_settings();
  settings.request_timeout = 300ms;
  start(settings, {});
  Client slow(addr_);
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(slow.send("GET /heal"));  // and never the rest
  auto r = fetch(addr_, "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(slow.wait_closed());
  // An idle keep-alive connection is closed at the same deadline, uncounted.
  Client idle(addr_);
  ASSERT_TRUE(idle.send(request("GET", "/healthz", false)));
  ASSERT_TRUE(idle.read_response());
  EXPECT_TRUE(idle.wait_closed());
  EXPECT_EQ(metrics_.admin_rejected(metrics::AdminReject::timeout).Value(), 1.0);
  EXPECT_TRUE(eventually(
      [&] { return metrics_.admin_rejected(metrics::AdminReject::timeout).Value() >= 1.0; }));
}

TEST_F(AdminServerTest, ListerThatNeverAnswersGives503) {
  std::mutex mutex;
  std::vector<std::function<void(std::vector<SessionInfo>)>> pending;
  AdminSettings settings = loopback_settings();
  settings.lister_timeout = 200ms;
  start(settings, [&](std::uint64_t, std::size_t,
                      std::function<void(std::vector<SessionInfo>)> done) {
    std::lock_guard lock(mutex);
    pending.push_back(std::move(done));
  });
  Client c(addr_);
  ASSERT_TRUE(c.send(request("GET", "/v1/sessions", false)));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("\"error\":"), std::string::npos);

  // The late answer is dropped; the connection serves the next request.
  {
    std::lock_guard lock(mutex);
    ASSERT_EQ(pending.size(), 1u);
    pending[0](make_sessions(1));
  }
  ASSERT_TRUE(c.send(request("GET", "/healthz", false)));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok\n");

  // A request still waiting when the server stops, answered afterwards.
  Client waiting(addr_);
  ASSERT_TRUE(waiting.send(request("GET", "/v1/sessions", false)));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mutex);
    return pending.size() == 2;
  }));
  server_->stop();
  EXPECT_TRUE(waiting.wait_closed());
  std::lock_guard lock(mutex);
  pending[1](make_sessions(1));  // must be a harmless no-op
}

// A client that is not ours: Python's urllib scrapes /metrics and the
// sessions page, prometheus_client parses the scrape, json parses the page.
TEST_F(AdminServerTest, RealHttpClientScrapesAndParses) {
  FakeWorkers workers(make_sessions(3));
  metrics_.add_session_source([](metrics::SessionCounts& c) {
    c.at(metrics::Proto::dtls, metrics::SessionType::server,
         metrics::SessionState::established) += 3;
  });
  start(loopback_settings(), workers.lister());
  const std::string base = "http://" + addr_.to_string();
  const std::string script =
      "import json, urllib.request\n"
      "from prometheus_client.parser import text_string_to_metric_families\n"
      "text = urllib.request.urlopen('" + base + "/metrics', timeout=10).read().decode()\n"
      "v = [s.value for f in text_string_to_metric_families(text) for s in f.samples\n"
      "     if s.name == 'coapgw_sessions' and s.labels == {'proto': 'dtls', 'type': 'server',\n"
      "                                                     'state': 'established'}]\n"
      "page = json.load(urllib.request.urlopen('" + base + "/v1/sessions?limit=2', timeout=10))\n"
      "print(v, [s['identity'] for s in page['sessions']], page['next_cursor'])\n";
  const std::string cmd = std::string(COAPGW_SYSTEM_PYTHON) + " -c \"" + script + "\" 2>&1";
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[1024];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  EXPECT_EQ(::pclose(pipe), 0) << out;
  EXPECT_EQ(out, "[3.0] ['device-1', 'device-2'] 20\n");
}

TEST_F(AdminServerTest, StartFailsWhenPortTaken) {
  start(loopback_settings(), {});
  AdminSettings settings;
  settings.listen = addr_;
  AdminServer second(settings, metrics_, {});
  std::string error;
  EXPECT_FALSE(second.start(&error));
  EXPECT_NE(error.find(addr_.to_string()), std::string::npos) << error;
}

}  // namespace
}  // namespace coapgw::admin
