// DtlsClient (the engine under coaps:// upstreams) against an in-process OpenSSL DTLS 1.2 PSK server on
// memory BIOs: datagrams are passed by hand, so every step is deterministic and needs no socket.
#include "gateway/dtls_client.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstring>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace coapgw::gateway {
namespace {

constexpr const char* key = "engine-secret";

struct ServerState {
  std::string identity_seen;
};

unsigned int server_psk(SSL* ssl, const char* identity, unsigned char* psk, unsigned int max_psk_len) {
  auto* st = static_cast<ServerState*>(SSL_get_app_data(ssl));
  st->identity_seen = identity ? identity : "";
  const std::size_t n = std::strlen(key);
  if (n > max_psk_len) return 0;
  std::memcpy(psk, key, n);
  return static_cast<unsigned int>(n);
}

// A DTLS server SSL object fed and drained by hand.
class MemoryServer {
 public:
  MemoryServer() {
    ctx_ = SSL_CTX_new(DTLS_server_method());
    SSL_CTX_set_cipher_list(ctx_, "PSK-AES128-CCM8");
    SSL_CTX_set_psk_server_callback(ctx_, server_psk);
    ssl_ = SSL_new(ctx_);
    rbio_ = BIO_new(BIO_s_mem());
    wbio_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rbio_, -1);
    SSL_set_bio(ssl_, rbio_, wbio_);
    SSL_set_app_data(ssl_, &state);
    SSL_set_options(ssl_, SSL_OP_NO_QUERY_MTU);
    DTLS_set_link_mtu(ssl_, 1280);
    SSL_set_accept_state(ssl_);
  }
  ~MemoryServer() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }

  // Feeds one datagram; returns the application records it carried.
  std::vector<std::string> feed(const std::vector<std::byte>& datagram) {
    BIO_write(rbio_, datagram.data(), static_cast<int>(datagram.size()));
    std::vector<std::string> records;
    if (!SSL_is_init_finished(ssl_)) {
      SSL_do_handshake(ssl_);
      if (!SSL_is_init_finished(ssl_)) return records;
    }
    char buf[2048];
    int n;
    while ((n = SSL_read(ssl_, buf, sizeof buf)) > 0) records.emplace_back(buf, static_cast<std::size_t>(n));
    return records;
  }
  std::vector<std::byte> drain() {
    std::vector<std::byte> out(BIO_ctrl_pending(wbio_));
    if (!out.empty()) BIO_read(wbio_, out.data(), static_cast<int>(out.size()));
    return out;
  }
  void write(const std::string& s) { SSL_write(ssl_, s.data(), static_cast<int>(s.size())); }
  void close_notify() { SSL_shutdown(ssl_); }

  ServerState state;

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;
  BIO* wbio_ = nullptr;
};

// Runs datagrams both ways until neither side has anything to send (bounded).
std::vector<std::string> pump(DtlsClient& client, MemoryServer& server, std::size_t link_mtu = 1280) {
  std::vector<std::string> at_server;
  for (int round = 0; round < 20; ++round) {
    bool moved = false;
    for (auto& d : client.take_datagrams()) {
      EXPECT_LE(d.size(), link_mtu);
      for (auto& r : server.feed(d)) at_server.push_back(r);
      moved = true;
    }
    auto back = server.drain();
    if (!back.empty()) {
      std::vector<std::vector<std::byte>> messages;
      client.receive(back, messages);
      EXPECT_TRUE(messages.empty());
      moved = true;
    }
    if (!moved) break;
  }
  return at_server;
}

DtlsClientSettings settings() { return DtlsClientSettings{"engine-client", key, 1280}; }

TEST(DtlsClient, HandshakesWithPskAndCarriesOneMessagePerRecord) {
  DtlsClient client(settings());
  MemoryServer server;
  EXPECT_EQ(client.state(), DtlsClient::State::idle);
  EXPECT_FALSE(client.send(test::bytes("too early")));
  ASSERT_TRUE(client.connect());
  EXPECT_EQ(client.state(), DtlsClient::State::handshake);
  EXPECT_TRUE(client.retransmit_in().has_value());  // the ClientHello is under OpenSSL's timer
  pump(client, server);
  ASSERT_EQ(client.state(), DtlsClient::State::established) << client.error();
  EXPECT_EQ(server.state.identity_seen, "engine-client");
  EXPECT_NE(client.native_handle(), nullptr);
  EXPECT_FALSE(client.retransmit_in().has_value());

  ASSERT_TRUE(client.send(test::bytes("first")));
  ASSERT_TRUE(client.send(test::bytes("second")));
  auto at_server = pump(client, server);
  EXPECT_EQ(at_server, (std::vector<std::string>{"first", "second"}));

  server.write("answer-1");
  server.write("answer-2");
  std::vector<std::vector<std::byte>> messages;
  client.receive(server.drain(), messages);  // both records in one datagram
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(test::text(messages[0]), "answer-1");
  EXPECT_EQ(test::text(messages[1]), "answer-2");
}

TEST(DtlsClient, PeerCloseNotifyClosesAndConnectStartsAgain) {
  DtlsClient client(settings());
  MemoryServer server;
  ASSERT_TRUE(client.connect());
  pump(client, server);
  ASSERT_EQ(client.state(), DtlsClient::State::established);
  server.close_notify();
  std::vector<std::vector<std::byte>> messages;
  client.receive(server.drain(), messages);
  EXPECT_TRUE(messages.empty());
  EXPECT_EQ(client.state(), DtlsClient::State::closed);
  EXPECT_FALSE(client.send(test::bytes("after close")));

  MemoryServer fresh;
  ASSERT_TRUE(client.connect());
  pump(client, fresh);
  EXPECT_EQ(client.state(), DtlsClient::State::established) << client.error();
}

TEST(DtlsClient, WrongKeyNeverEstablishes) {
  DtlsClient client(DtlsClientSettings{"engine-client", "wrong-key", 1280});
  MemoryServer server;
  ASSERT_TRUE(client.connect());
  pump(client, server);
  // The server cannot authenticate our Finished; DTLS drops it silently (or alerts): either way no
  // connection, and the caller's handshake bound decides.
  EXPECT_NE(client.state(), DtlsClient::State::established);
  EXPECT_FALSE(client.send(test::bytes("x")));
}

TEST(DtlsClient, CloseSendsCloseNotify) {
  DtlsClient client(settings());
  MemoryServer server;
  ASSERT_TRUE(client.connect());
  pump(client, server);
  ASSERT_EQ(client.state(), DtlsClient::State::established);
  client.close();
  EXPECT_EQ(client.state(), DtlsClient::State::closed);
  auto out = client.take_datagrams();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::to_integer<int>(out[0][0]), 21);  // record content type: alert
}

TEST(DtlsClient, RejectsUnusablePskAtStartup) {
  EXPECT_THROW(DtlsClient(DtlsClientSettings{"id", "", 1280}), std::runtime_error);
  EXPECT_THROW(DtlsClient(DtlsClientSettings{std::string(257, 'x'), "k", 1280}), std::runtime_error);
  EXPECT_THROW(DtlsClient(DtlsClientSettings{"id", "k", 10}), std::runtime_error);
}

}  // namespace
}  // namespace coapgw::gateway
