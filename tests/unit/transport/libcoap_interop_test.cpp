// RFC 8323 interop with libcoap, both ways, over loopback TCP:
// - libcoap's coap-client-notls (coap+tcp://) against our TcpStreamListener;
// - our framing and client-role StreamConnection against libcoap's coap-server-notls TCP listener.
// Skipped when the libcoap binaries are not installed (scripts/install-deps.sh installs them).
#include <gtest/gtest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <cstdio>
#include <future>
#include <string>
#include <thread>

#include "coap/option.hpp"
#include "transport/tcp_listener.hpp"
#include "transport_test_support.hpp"

extern char** environ;

namespace coapgw::transport {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

bool installed(const char* tool) {
  return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0;
}

// A loopback TCP port that was free a moment ago (libcoap's server cannot be told to use port 0).
std::uint16_t free_port() {
  asio::io_context ioc;
  asio::ip::tcp::acceptor a(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

class Echo : public TcpStreamListener::Host {
 public:
  std::atomic<int> csm_count{0};
  void opened(StreamLink&) override {}
  void established(StreamLink&, const coap::Csm&) override { ++csm_count; }
  void deliver(StreamLink& link, const coap::MessageView& m, StreamTime) override {
    if (!coap::is_request(m.code)) return;
    coap::Message answer;
    answer.code = coap::code::content;
    answer.token.assign(m.token.begin(), m.token.end());
    const std::string text = "hello over tcp " + coap::uri_path(m);
    answer.payload.assign(coap::as_bytes(text).begin(), coap::as_bytes(text).end());
    link.send(answer);
  }
  void closed(StreamLink&, StreamClose) override {}
  void refused(StreamLink&, StreamRefusal) override {}
};

TEST(LibcoapInterop, CoapClientTalksToOurListener) {
  if (!installed("coap-client-notls")) GTEST_SKIP() << "coap-client-notls not installed";
  asio::io_context ioc;
  auto guard = asio::make_work_guard(ioc);
  Echo app;
  TcpStreamListener listener(ioc, {}, app);
  ASSERT_FALSE(listener.listen(*Address::parse("127.0.0.1:0")));
  const std::uint16_t port = listener.port();
  std::thread io([&] { ioc.run(); });

  // -B bounds the client's own wait; the listener answers at once.
  const std::string cmd = "coap-client-notls -m get -B 5 coap+tcp://127.0.0.1:" + std::to_string(port) +
                          "/some/path 2>&1";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    ::pclose(p);
  }
  std::promise<void> stopped;
  asio::post(ioc, [&] {
    listener.stop();
    stopped.set_value();
  });
  stopped.get_future().get();
  test::poll_until([&] {
    std::promise<std::size_t> n;
    asio::post(ioc, [&] { n.set_value(listener.connections()); });
    return n.get_future().get() == 0;
  });
  guard.reset();
  ioc.stop();
  io.join();

  EXPECT_NE(out.find("hello over tcp /some/path"), std::string::npos) << out;
  EXPECT_EQ(app.csm_count.load(), 1);  // libcoap's CSM was accepted
}

class LibcoapServer {
 public:
  explicit LibcoapServer(std::uint16_t port) {
    const std::string p = std::to_string(port);
    const char* argv[] = {"coap-server-notls", "-A", "127.0.0.1", "-p", p.c_str(), nullptr};
    if (::posix_spawnp(&pid_, argv[0], nullptr, nullptr, const_cast<char**>(argv), environ) != 0) pid_ = -1;
  }
  ~LibcoapServer() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

TEST(LibcoapInterop, OurFramingTalksToCoapServer) {
  if (!installed("coap-server-notls")) GTEST_SKIP() << "coap-server-notls not installed";
  const std::uint16_t port = free_port();
  LibcoapServer server(port);
  ASSERT_TRUE(server.running());
  std::unique_ptr<test::Client> client;
  ASSERT_TRUE(test::poll_until([&] {
    try {
      client = std::make_unique<test::Client>(port);
      return true;
    } catch (const std::exception&) {
      return false;  // not listening yet
    }
  }));
  client->conn.start(StreamClock::now());  // initiator: CSM first, without waiting (§3.3)
  coap::Message get;
  get.code = coap::code::get;
  get.token = {std::byte{0x17}, std::byte{0x29}};
  get.add_string_option(coap::option::uri_path, ".well-known");
  get.add_string_option(coap::option::uri_path, "core");
  ASSERT_EQ(client->conn.send(get), StreamConnection::SendResult::sent);
  ASSERT_TRUE(client->read_until([&] { return !client->host.delivered.empty(); }));

  EXPECT_EQ(client->conn.state(), StreamState::established);
  ASSERT_FALSE(client->host.sent_by_peer.empty());
  EXPECT_EQ(client->host.sent_by_peer.front().code, coap::signal::csm);  // libcoap's CSM came first
  const coap::Message& answer = client->host.delivered.front();
  EXPECT_EQ(answer.code, coap::code::content);
  EXPECT_EQ(answer.token, get.token);
  EXPECT_NE(std::string(coap::as_string(answer.payload)).find("</time>"), std::string::npos);
  EXPECT_TRUE(client->host.closes.empty());
}

}  // namespace
}  // namespace coapgw::transport
