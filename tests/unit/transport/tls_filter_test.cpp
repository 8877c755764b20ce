// TlsFilter driven with bytes only, against an OpenSSL client on memory BIOs: TLS 1.2 and 1.3 PSK
// handshakes, application data both ways, a wrong key, close_notify.
#include <gtest/gtest.h>

#include <openssl/ssl.h>

#include <cstring>
#include <string>

#include "transport/tls_filter.hpp"

namespace coapgw::transport {
namespace {

constexpr char identity[] = "device-1";
std::string server_key = "right-key";
std::string client_key = "right-key";

unsigned server_psk(SSL*, const char* id, unsigned char* psk, unsigned max) {
  if (std::strcmp(id, identity) != 0 || server_key.size() > max) return 0;
  std::memcpy(psk, server_key.data(), server_key.size());
  return static_cast<unsigned>(server_key.size());
}
unsigned client_psk(SSL*, const char*, char* id, unsigned max_id, unsigned char* psk, unsigned max) {
  if (sizeof identity > max_id || client_key.size() > max) return 0;
  std::memcpy(id, identity, sizeof identity);
  std::memcpy(psk, client_key.data(), client_key.size());
  return static_cast<unsigned>(client_key.size());
}

struct Pair {
  explicit Pair(int version) {
    server_ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_cipher_list(server_ctx, "PSK-AES128-GCM-SHA256");
    SSL_CTX_set_psk_server_callback(server_ctx, server_psk);
    client_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(client_ctx, version);
    SSL_CTX_set_max_proto_version(client_ctx, version);
    SSL_CTX_set_cipher_list(client_ctx, "PSK-AES128-GCM-SHA256");
    SSL_CTX_set_psk_client_callback(client_ctx, client_psk);
    client = SSL_new(client_ctx);
    SSL_set_bio(client, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_connect_state(client);
    server = std::make_unique<TlsFilter>(server_ctx);
  }
  ~Pair() {
    server.reset();
    SSL_free(client);
    SSL_CTX_free(client_ctx);
    SSL_CTX_free(server_ctx);
  }
  std::vector<std::byte> from_client() {
    std::vector<std::byte> out(65536);
    const int n = BIO_read(SSL_get_wbio(client), out.data(), static_cast<int>(out.size()));
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return out;
  }
  void to_client(const std::vector<std::byte>& in) {
    if (!in.empty()) BIO_write(SSL_get_rbio(client), in.data(), static_cast<int>(in.size()));
  }
  // Runs the handshake to its end on both sides (a few flights).
  TlsFilter::Status handshake() {
    for (int round = 0; round < 8; ++round) {
      SSL_do_handshake(client);
      std::vector<std::byte> out;
      const auto status = server->on_ciphertext(from_client(), plain, out);
      to_client(out);
      if (status == TlsFilter::Status::failed) return status;
      if (status == TlsFilter::Status::open && SSL_is_init_finished(client)) return status;
    }
    return server->status();
  }
  std::string client_read() {
    char buf[256];
    const int n = SSL_read(client, buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }

  SSL_CTX* server_ctx;
  SSL_CTX* client_ctx;
  SSL* client;
  std::unique_ptr<TlsFilter> server;
  std::vector<std::byte> plain;
};

class TlsFilterVersions : public ::testing::TestWithParam<int> {};

TEST_P(TlsFilterVersions, PskHandshakeThenDataBothWaysThenCloseNotify) {
  server_key = client_key = "right-key";
  Pair p(GetParam());
  ASSERT_EQ(p.handshake(), TlsFilter::Status::open);
  EXPECT_EQ(SSL_version(p.server->native()), GetParam());
  ASSERT_EQ(SSL_write(p.client, "\x00\xe1", 2), 2);  // a CSM frame, as a device sends it
  std::vector<std::byte> out;
  EXPECT_EQ(p.server->on_ciphertext(p.from_client(), p.plain, out), TlsFilter::Status::open);
  ASSERT_EQ(p.plain.size(), 2u);
  EXPECT_EQ(std::to_integer<int>(p.plain[1]), 0xe1);
  p.to_client(out);
  out.clear();
  const std::string answer = "answer";
  ASSERT_TRUE(p.server->write(std::as_bytes(std::span(answer.data(), answer.size())), out));
  p.to_client(out);
  EXPECT_EQ(p.client_read(), answer);
  SSL_shutdown(p.client);
  out.clear();
  EXPECT_EQ(p.server->on_ciphertext(p.from_client(), p.plain, out), TlsFilter::Status::closed);
}

TEST_P(TlsFilterVersions, WrongKeyFailsTheHandshake) {
  server_key = "right-key";
  client_key = "wrong-key";
  Pair p(GetParam());
  EXPECT_EQ(p.handshake(), TlsFilter::Status::failed);
  EXPECT_FALSE(p.server->error().empty());
  std::vector<std::byte> out;
  EXPECT_FALSE(p.server->write(std::vector<std::byte>(3), out));
  client_key = "right-key";
}

INSTANTIATE_TEST_SUITE_P(Tls, TlsFilterVersions, ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION));

TEST(TlsFilter, GarbageIsAFailedHandshakeNotACrash) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  TlsFilter f(ctx);
  std::vector<std::byte> plain, out;
  const std::string junk = "GET / HTTP/1.1\r\n\r\n";
  EXPECT_EQ(f.on_ciphertext(std::as_bytes(std::span(junk.data(), junk.size())), plain, out), TlsFilter::Status::failed);
  EXPECT_TRUE(plain.empty());
  SSL_CTX_free(ctx);
}

}  // namespace
}  // namespace coapgw::transport
