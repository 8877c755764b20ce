// TcpStreamListener's hold for a key lookup (dtls.psk.lookup over coaps+tcp), over real loopback
// sockets against a blocking OpenSSL client: the identity the client names reaches the Host before
// OpenSSL needs the key, the handshake waits until StreamLink::resume, then completes with a key
// learnt meanwhile, fails without one, and a peer that sends too much while held is cut.
#include <gtest/gtest.h>

#include <openssl/ssl.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <cstring>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include "transport/tcp_listener.hpp"
#include "transport_test_support.hpp"

namespace coapgw::transport {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr char identity[] = "held-device";
constexpr char secret[] = "learnt-while-held";

std::mutex key_mutex;
bool key_known = false;  // the "registry answer": the server's PSK callback finds the key only then

unsigned server_psk(SSL*, const char* id, unsigned char* psk, unsigned max) {
  std::lock_guard lock(key_mutex);
  if (!key_known || std::strcmp(id, identity) != 0 || sizeof secret - 1 > max) return 0;
  std::memcpy(psk, secret, sizeof secret - 1);
  return sizeof secret - 1;
}
unsigned client_psk(SSL*, const char*, char* id, unsigned max_id, unsigned char* psk, unsigned max) {
  if (sizeof identity > max_id || sizeof secret - 1 > max) return 0;
  std::memcpy(id, identity, sizeof identity);
  std::memcpy(psk, secret, sizeof secret - 1);
  return sizeof secret - 1;
}

class Holder : public TcpStreamListener::Host {
 public:
  bool reads_psk_identity() const override { return true; }
  bool wait_for_key(StreamLink& link, std::string_view id) override {
    std::lock_guard lock(mutex);
    named = std::string(id);
    waiting = &link;
    return true;
  }
  bool secured(StreamLink&) override {
    std::lock_guard lock(mutex);
    ++secured_count;
    return true;
  }
  void opened(StreamLink&) override {}
  void established(StreamLink&, const coap::Csm&) override {}
  void deliver(StreamLink&, const coap::MessageView&, StreamTime) override {}
  void closed(StreamLink& link, StreamClose reason) override {
    std::lock_guard lock(mutex);
    if (&link == waiting) waiting = nullptr;
    closes.push_back(reason);
  }
  void refused(StreamLink&, StreamRefusal) override {}

  std::mutex mutex;
  std::string named;
  StreamLink* waiting = nullptr;
  int secured_count = 0;
  std::vector<StreamClose> closes;
};

class TlsHoldTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    {
      std::lock_guard lock(key_mutex);
      key_known = false;
    }
    server_ctx_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_cipher_list(server_ctx_, "PSK-AES128-GCM-SHA256");
    SSL_CTX_set_psk_server_callback(server_ctx_, server_psk);
    TcpListenerSettings settings;
    settings.tls = server_ctx_;
    listener_ = std::make_unique<TcpStreamListener>(ioc_, settings, host_);
    ASSERT_FALSE(listener_->listen(*Address::parse("127.0.0.1:0")));
    port_ = listener_->port();  // read before the listener's thread runs
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    on_io([this] { listener_->stop(); });
    test::poll_until([this] { return on_io([this] { return listener_->connections(); }) == 0; });
    guard_.reset();
    ioc_.stop();
    thread_.join();
    listener_.reset();
    SSL_CTX_free(server_ctx_);
  }
  template <class F>
  auto on_io(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(f);
    auto result = task.get_future();
    asio::post(ioc_, [&task] { task(); });
    return result.get();
  }
  // A blocking OpenSSL PSK client on its own thread: SSL_connect's result.
  std::future<int> connect() {
    return std::async(std::launch::async, [this] {
      SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
      SSL_CTX_set_min_proto_version(ctx, GetParam());
      SSL_CTX_set_max_proto_version(ctx, GetParam());
      SSL_CTX_set_cipher_list(ctx, "PSK-AES128-GCM-SHA256");
      SSL_CTX_set_psk_client_callback(ctx, client_psk);
      asio::io_context io;
      tcp::socket socket(io);
      socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
      SSL* ssl = SSL_new(ctx);
      SSL_set_fd(ssl, socket.native_handle());
      const int rc = SSL_connect(ssl);
      SSL_free(ssl);
      SSL_CTX_free(ctx);
      return rc;
    });
  }
  bool waiting() {
    std::lock_guard lock(host_.mutex);
    return host_.waiting != nullptr;
  }
  void resume() {
    on_io([this] {
      StreamLink* link = nullptr;
      {
        std::lock_guard lock(host_.mutex);
        link = host_.waiting;
      }
      if (link != nullptr) link->resume();
    });
  }

  SSL_CTX* server_ctx_ = nullptr;
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_ = asio::make_work_guard(ioc_);
  Holder host_;
  std::unique_ptr<TcpStreamListener> listener_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

TEST_P(TlsHoldTest, HandshakeWaitsForTheKeyThenCompletes) {
  auto client = connect();
  ASSERT_TRUE(test::poll_until([this] { return waiting(); }));
  {
    std::lock_guard lock(host_.mutex);
    EXPECT_EQ(host_.named, identity);
    EXPECT_EQ(host_.secured_count, 0);
  }
  {
    std::lock_guard lock(key_mutex);
    key_known = true;  // the registry answered
  }
  resume();
  EXPECT_EQ(client.get(), 1);
  ASSERT_TRUE(test::poll_until([this] {
    std::lock_guard lock(host_.mutex);
    return host_.secured_count == 1;
  }));
}

TEST_P(TlsHoldTest, ResumedWithoutAKeyTheHandshakeFails) {
  auto client = connect();
  ASSERT_TRUE(test::poll_until([this] { return waiting(); }));
  resume();
  EXPECT_NE(client.get(), 1);
  ASSERT_TRUE(test::poll_until([this] {
    std::lock_guard lock(host_.mutex);
    return !host_.closes.empty();
  }));
  std::lock_guard lock(host_.mutex);
  EXPECT_EQ(host_.closes.front(), StreamClose::tls_failed);
  EXPECT_EQ(host_.secured_count, 0);
}

INSTANTIATE_TEST_SUITE_P(Tls, TlsHoldTest, ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION));

TEST_F(TlsHoldTest, TooMuchWhileHeldEndsTheConnection) {
  // A TLS 1.3 ClientHello naming the identity from a memory-BIO client, then junk past the bound.
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_psk_client_callback(ctx, client_psk);
  SSL* ssl = SSL_new(ctx);
  SSL_set_bio(ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
  SSL_set_connect_state(ssl);
  SSL_do_handshake(ssl);
  std::vector<std::byte> hello(16384);
  hello.resize(static_cast<std::size_t>(std::max(0, BIO_read(SSL_get_wbio(ssl), hello.data(), 16384))));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ASSERT_FALSE(hello.empty());
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
  asio::write(socket, asio::buffer(hello));
  ASSERT_TRUE(test::poll_until([this] { return waiting(); }));
  const std::vector<std::byte> junk(TcpStreamListener::max_held_bytes, std::byte{0x17});
  boost::system::error_code ec;
  asio::write(socket, asio::buffer(junk), ec);  // the gateway may close before it read it all
  ASSERT_TRUE(test::poll_until([this] {
    std::lock_guard lock(host_.mutex);
    return !host_.closes.empty();
  }));
  std::lock_guard lock(host_.mutex);
  EXPECT_EQ(host_.closes.front(), StreamClose::tls_failed);
}

}  // namespace
}  // namespace coapgw::transport
