// TcpStreamListener over real loopback sockets: the listener runs on its own io_context thread, the
// test is a blocking client whose bytes are cut and checked by a client-role StreamConnection.
// Waits are polls or socket reads with a deadline, never sleeps.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <future>
#include <mutex>
#include <thread>

#include "coap/option.hpp"
#include "transport/tcp_listener.hpp"
#include "transport_test_support.hpp"

namespace coapgw::transport {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using test::Client;

// The application side: answers every request with 2.05 "hello <path>".
class App : public TcpStreamListener::Host {
 public:
  void opened(StreamLink&) override { bump(opened_); }
  void established(StreamLink&, const coap::Csm&) override { bump(established_); }
  void deliver(StreamLink& link, const coap::MessageView& m, StreamTime) override {
    if (!coap::is_request(m.code)) return;
    coap::Message answer;
    answer.code = coap::code::content;
    answer.token.assign(m.token.begin(), m.token.end());
    const std::string text = "hello " + coap::uri_path(m) + std::string(pad, '.');
    answer.payload.assign(coap::as_bytes(text).begin(), coap::as_bytes(text).end());
    link.send(answer);
  }
  void closed(StreamLink&, StreamClose reason) override {
    std::lock_guard lock(mutex_);
    closes_.push_back(reason);
  }
  void refused(StreamLink&, StreamRefusal) override {}

  std::size_t pad = 0;  // bytes added to each answer (set before start)

  int established_count() {
    std::lock_guard lock(mutex_);
    return established_;
  }
  std::vector<StreamClose> closes() {
    std::lock_guard lock(mutex_);
    return closes_;
  }

 private:
  void bump(int& n) {
    std::lock_guard lock(mutex_);
    ++n;
  }
  std::mutex mutex_;
  int opened_ = 0;
  int established_ = 0;
  std::vector<StreamClose> closes_;
};

class TcpListenerTest : public ::testing::Test {
 protected:
  void start(TcpListenerSettings settings = {}) {
    listener_ = std::make_unique<TcpStreamListener>(ioc_, settings, app_);
    ASSERT_FALSE(listener_->listen(*Address::parse("127.0.0.1:0")));
    port_ = listener_->port();
    ASSERT_NE(port_, 0);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  // Runs f on the listener's thread and returns its result (the listener is not thread-safe).
  template <class F>
  auto on_io(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(f);
    auto result = task.get_future();
    asio::post(ioc_, [&task] { task(); });
    return result.get();
  }
  void TearDown() override {
    if (!thread_.joinable()) return;
    on_io([this] { listener_->stop(); });
    test::poll_until([this] { return on_io([this] { return listener_->connections(); }) == 0; });
    guard_.reset();
    ioc_.stop();
    thread_.join();
    listener_.reset();
  }
  TcpStreamListener::Counters counters() { return on_io([this] { return listener_->counters(); }); }

  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_ = asio::make_work_guard(ioc_);
  App app_;
  std::unique_ptr<TcpStreamListener> listener_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

TEST_F(TcpListenerTest, CsmAndRequestOverARealSocket) {
  start();
  Client client(port_);
  client.conn.start(StreamClock::now());  // our CSM
  coap::Message get;
  get.code = coap::code::get;
  get.token = {std::byte{0x42}};
  get.add_string_option(coap::option::uri_path, "a");
  ASSERT_EQ(client.conn.send(get), StreamConnection::SendResult::sent);
  ASSERT_TRUE(client.read_until([&] { return !client.host.delivered.empty(); }));
  EXPECT_EQ(client.conn.state(), StreamState::established);  // the listener's CSM came first
  const coap::Message& answer = client.host.delivered.front();
  EXPECT_EQ(answer.code, coap::code::content);
  EXPECT_EQ(answer.token, get.token);
  EXPECT_EQ(coap::as_string(answer.payload), "hello /a");
  EXPECT_EQ(app_.established_count(), 1);
}

TEST_F(TcpListenerTest, GarbageAbortsThatConnectionOnly) {
  start();
  Client bad(port_);
  bad.conn.start(StreamClock::now());
  bad.write_raw({std::byte{0x0c}});  // TKL 12
  ASSERT_TRUE(bad.read_until([&] { return bad.host.closes.size() == 1; }));
  EXPECT_EQ(bad.host.closes[0], StreamClose::peer_abort);
  test::poll_until([&] { return app_.closes().size() == 1; });
  EXPECT_EQ(app_.closes(), std::vector<StreamClose>{StreamClose::malformed_frame});
  // The listener carries on.
  Client good(port_);
  good.conn.start(StreamClock::now());
  coap::Message get;
  get.code = coap::code::get;
  ASSERT_EQ(good.conn.send(get), StreamConnection::SendResult::sent);
  EXPECT_TRUE(good.read_until([&] { return !good.host.delivered.empty(); }));
}

TEST_F(TcpListenerTest, ConnectionsOverTheCapAreClosedAndCounted) {
  TcpListenerSettings settings;
  settings.max_connections = 1;
  start(settings);
  Client first(port_);
  first.conn.start(StreamClock::now());
  ASSERT_TRUE(first.read_until([&] { return first.conn.state() == StreamState::established; }));
  Client second(port_);
  EXPECT_TRUE(second.read_until([&] { return second.eof; }));
  EXPECT_TRUE(second.host.sent_by_peer.empty());
  test::poll_until([&] { return counters().refused_over_cap == 1; });
  EXPECT_EQ(counters().refused_over_cap, 1u);
  EXPECT_EQ(counters().accepted, 1u);
}

TEST_F(TcpListenerTest, SilentPeerIsAbortedAtTheCsmTimeout) {
  TcpListenerSettings settings;
  settings.stream.csm_timeout = 200ms;
  start(settings);
  Client mute(port_);  // connects and never sends its CSM
  ASSERT_TRUE(mute.read_until([&] { return mute.eof; }));
  ASSERT_FALSE(mute.host.sent_by_peer.empty());
  EXPECT_EQ(mute.host.sent_by_peer.back().code, coap::signal::abort);
  test::poll_until([&] { return app_.closes().size() == 1; });
  EXPECT_EQ(app_.closes(), std::vector<StreamClose>{StreamClose::csm_timeout});
}

TEST(TcpListenerBind, ReusePortLetsWorkersShareAnAddress) {
  asio::io_context ioc;
  App app;
  TcpListenerSettings shared;
  shared.reuse_port = true;
  TcpStreamListener first(ioc, shared, app);
  ASSERT_FALSE(first.listen(*Address::parse("127.0.0.1:0")));
  const Address same = *Address::parse("127.0.0.1:" + std::to_string(first.port()));
  TcpStreamListener second(ioc, shared, app);
  EXPECT_FALSE(second.listen(same));
  EXPECT_EQ(second.port(), first.port());
  TcpStreamListener exclusive(ioc, {}, app);
  EXPECT_TRUE(exclusive.listen(same));  // EADDRINUSE without the option
}

TEST_F(TcpListenerTest, PeerThatDoesNotReadIsAbortedAsSlowReader) {
  TcpListenerSettings settings;
  settings.max_write_queue = 65536;
  app_.pad = 60000;
  start(settings);
  StreamSettings big;
  big.max_message_size = 65535;  // our CSM lets the listener send 60 kB answers
  Client reader_that_never_reads(port_, big);
  reader_that_never_reads.conn.start(StreamClock::now());
  coap::Message get;
  get.code = coap::code::get;
  // Bounded: 400 answers of 60 kB (24 MB) outgrow any loopback socket buffers long before the end.
  for (int i = 0; i < 400 && counters().slow_readers == 0; ++i) {
    get.token = {std::byte(i & 0xff), std::byte(i >> 8)};
    reader_that_never_reads.conn.send(get);
  }
  EXPECT_TRUE(test::poll_until([&] { return counters().slow_readers == 1; }));
  EXPECT_TRUE(test::poll_until([&] { return app_.closes().size() == 1; }));
  EXPECT_EQ(app_.closes(), std::vector<StreamClose>{StreamClose::aborted});
}

}  // namespace
}  // namespace coapgw::transport
