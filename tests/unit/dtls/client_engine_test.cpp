// dtls::Engine in the client role (ClientContext, the coaps:// upstream side) against the same
// engine in the server role (ServerContext) and against a plain OpenSSL DTLS server, all in
// memory: datagrams are passed by hand and time is passed in, so every step is deterministic and
// needs no socket.
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstring>
#include <string>
#include <vector>

#include "dtls/client_context.hpp"
#include "dtls/server_context.hpp"

namespace coapgw::dtls {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::byte>;

const auto t0 = std::chrono::steady_clock::time_point{} + 1000s;

Bytes bytes(std::string_view s) {
  Bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}
std::string text(const Bytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

Address device() { return *Address::parse("192.0.2.20:5684"); }
Address gateway_side() { return *Address::parse("192.0.2.1:40001"); }

std::unique_ptr<ClientContext> make_client(std::string identity = "upstream-id", std::string key = "upstream-key",
                                           std::string ciphers = {}) {
  ClientSettings s;
  s.psk_identity = std::move(identity);
  s.psk_key = std::move(key);
  s.ciphers = std::move(ciphers);
  s.handshake_timeout = 10s;
  std::string error;
  auto c = ClientContext::create(std::move(s), &error);
  EXPECT_TRUE(c) << error;
  return c;
}

std::unique_ptr<ServerContext> make_server(std::string ciphers = {}) {
  auto store = std::make_shared<PskStore>();
  store->add("upstream-id", "upstream-key");
  ServerSettings s;
  s.psk = store;
  s.ciphers = std::move(ciphers);
  std::string error;
  auto c = ServerContext::create(s, &error);
  EXPECT_TRUE(c) << error;
  return c;
}

// A server engine and what reached it, driven by hand.
struct ServerSide {
  ServerContext& context;
  std::unique_ptr<Engine> engine;
  std::vector<std::string> received;
  int hello_verifies = 0;

  // One datagram from the client; what the server sends back lands in `to_client`.
  void deliver(const Bytes& datagram, std::vector<Bytes>& to_client, std::chrono::steady_clock::time_point now) {
    Output out;
    if (!engine) {
      auto r = context.on_hello(gateway_side(), datagram, out, now);
      if (r.verdict == ServerContext::HelloVerdict::hello_verify_sent) ++hello_verifies;
      if (r.engine) engine = std::move(r.engine);
    } else {
      engine->on_datagram(datagram, out, now);
    }
    for (auto& p : out.plaintexts) received.push_back(text(p));
    for (auto& d : out.datagrams) to_client.push_back(std::move(d));
  }
};

// Runs datagrams both ways until neither side sends (bounded). Returns what the client decrypted.
std::vector<std::string> pump(Engine& client, Output first, ServerSide& server,
                              std::chrono::steady_clock::time_point now = t0) {
  std::vector<std::string> at_client;
  std::vector<Bytes> to_server = std::move(first.datagrams);
  for (auto& p : first.plaintexts) at_client.push_back(text(p));
  for (int round = 0; round < 20 && !to_server.empty(); ++round) {
    std::vector<Bytes> to_client;
    for (auto& d : to_server) {
      EXPECT_LE(d.size(), 1280u - 28u);
      server.deliver(d, to_client, now);
    }
    to_server.clear();
    for (auto& d : to_client) {
      Output out;
      client.on_datagram(d, out, now);
      for (auto& p : out.plaintexts) at_client.push_back(text(p));
      for (auto& o : out.datagrams) to_server.push_back(std::move(o));
    }
  }
  return at_client;
}

Output sent(Engine& engine, std::string_view message) {
  Output out;
  EXPECT_TRUE(engine.send(bytes(message), out));
  return out;
}

TEST(DtlsClientEngine, HandshakesWithTheServerEngineAndBothSidesMoveToTheLeanLayer) {
  auto server_context = make_server();
  auto client_context = make_client();
  ServerSide server{*server_context, nullptr, {}, 0};
  Output out;
  auto client = client_context->connect(device(), out, t0);
  ASSERT_TRUE(client);
  EXPECT_EQ(client->state(), Engine::State::handshake);
  ASSERT_EQ(out.datagrams.size(), 1u);  // the ClientHello
  ASSERT_TRUE(client->next_timer());
  pump(*client, std::move(out), server);
  EXPECT_EQ(server.hello_verifies, 1);
  ASSERT_TRUE(server.engine);
  ASSERT_EQ(client->state(), Engine::State::established);
  ASSERT_EQ(server.engine->state(), Engine::State::established);
  EXPECT_EQ(server.engine->identity(), "upstream-id");
  EXPECT_EQ(client->identity(), "upstream-id");
  EXPECT_EQ(text(Bytes(client->psk_key().begin(), client->psk_key().end())), "upstream-key");
  EXPECT_EQ(client->psk_hint(), "coapgw");  // the server's hint
  EXPECT_EQ(client->next_timer(), std::nullopt);
  EXPECT_FALSE(client->lean());

  // First request: the server opens it through its SSL object and switches; its answer lets the
  // client switch too.
  pump(*client, sent(*client, "GET /one"), server);
  EXPECT_EQ(server.received, std::vector<std::string>{"GET /one"});
  EXPECT_TRUE(server.engine->lean());
  Output answer;
  ASSERT_TRUE(server.engine->send(bytes("2.05 one"), answer));
  std::vector<std::string> at_client;
  for (auto& d : answer.datagrams) {
    Output o;
    client->on_datagram(d, o, t0);
    for (auto& p : o.plaintexts) at_client.push_back(text(p));
  }
  EXPECT_EQ(at_client, std::vector<std::string>{"2.05 one"});
  EXPECT_TRUE(client->lean());
  EXPECT_EQ(client->native_handle(), nullptr);

  // Both lean now: the client's write keys are the server's read keys and the other way round.
  for (int i = 0; i < 3; ++i) {
    pump(*client, sent(*client, "GET /" + std::to_string(i)), server);
    Output back;
    ASSERT_TRUE(server.engine->send(bytes("2.05 " + std::to_string(i)), back));
    ASSERT_EQ(back.datagrams.size(), 1u);
    Output o;
    client->on_datagram(back.datagrams[0], o, t0);
    ASSERT_EQ(o.plaintexts.size(), 1u);
    EXPECT_EQ(text(o.plaintexts[0]), "2.05 " + std::to_string(i));
    // A replay of the same record is dropped and counted, never delivered twice.
    Output again;
    client->on_datagram(back.datagrams[0], again, t0);
    EXPECT_TRUE(again.plaintexts.empty());
  }
  EXPECT_EQ(server.received.size(), 4u);
  EXPECT_EQ(server.received.back(), "GET /2");
  EXPECT_EQ(client->bad_records(), 3u);
  EXPECT_EQ(server.engine->bad_records(), 0u);
  EXPECT_FALSE(client->export_state());  // persistence is for device sessions
}

TEST(DtlsClientEngine, CloseSendsCloseNotifyThatEndsTheServerSession) {
  auto server_context = make_server();
  auto client_context = make_client();
  ServerSide server{*server_context, nullptr, {}, 0};
  Output out;
  auto client = client_context->connect(device(), out, t0);
  pump(*client, std::move(out), server);
  ASSERT_EQ(client->state(), Engine::State::established);
  Output bye;
  client->close(bye);
  EXPECT_EQ(client->state(), Engine::State::closed);
  ASSERT_EQ(bye.datagrams.size(), 1u);
  std::vector<Bytes> ignored;
  server.deliver(bye.datagrams[0], ignored, t0);
  EXPECT_EQ(server.engine->state(), Engine::State::closed);
}

TEST(DtlsClientEngine, PeerCloseNotifyClosesTheClient) {
  auto server_context = make_server();
  auto client_context = make_client();
  ServerSide server{*server_context, nullptr, {}, 0};
  Output out;
  auto client = client_context->connect(device(), out, t0);
  pump(*client, std::move(out), server);
  ASSERT_EQ(client->state(), Engine::State::established);
  Output bye;
  server.engine->close(bye);
  ASSERT_EQ(bye.datagrams.size(), 1u);
  Output o;
  client->on_datagram(bye.datagrams[0], o, t0);
  EXPECT_TRUE(o.closed);
  EXPECT_EQ(o.failure, Failure::none);
  EXPECT_EQ(client->state(), Engine::State::closed);
}

TEST(DtlsClientEngine, AfterThePeerClosedTheSameContextConnectsAgain) {
  auto server_context = make_server();
  auto client_context = make_client();
  for (int attempt = 0; attempt < 2; ++attempt) {
    SCOPED_TRACE(attempt);
    ServerSide server{*server_context, nullptr, {}, 0};
    Output out;
    auto client = client_context->connect(device(), out, t0);
    ASSERT_TRUE(client);
    pump(*client, std::move(out), server);
    ASSERT_EQ(client->state(), Engine::State::established);
    // Two messages, two records, two plaintexts: one CoAP message per record.
    Output two = sent(*client, "first");
    Output second = sent(*client, "second");
    for (auto& d : second.datagrams) two.datagrams.push_back(std::move(d));
    pump(*client, std::move(two), server);
    EXPECT_EQ(server.received, (std::vector<std::string>{"first", "second"}));
    Output bye;
    server.engine->close(bye);
    Output o;
    client->on_datagram(bye.datagrams.at(0), o, t0);
    EXPECT_EQ(client->state(), Engine::State::closed);
  }
}

TEST(DtlsClientEngine, AMessageLargerThanTheMtuStillGoesInOneRecord) {
  // As coaps:// upstreams always did: the upstream link is not the constrained one.
  auto server_context = make_server();
  auto client_context = make_client();
  ServerSide server{*server_context, nullptr, {}, 0};
  Output out;
  auto client = client_context->connect(device(), out, t0);
  pump(*client, std::move(out), server);
  ASSERT_EQ(client->state(), Engine::State::established);
  EXPECT_EQ(client->max_plaintext(), 16384u);
  EXPECT_LT(server.engine->max_plaintext(), 1280u);  // the device side stays within the MTU
  const std::string big(3000, 'b');
  for (int i = 0; i < 2; ++i) {  // through the SSL object, then through the lean layer
    Output one = sent(*client, big);
    ASSERT_EQ(one.datagrams.size(), 1u);
    for (auto& d : one.datagrams) {
      std::vector<Bytes> back;
      server.deliver(d, back, t0);
    }
    Output answer;
    ASSERT_TRUE(server.engine->send(bytes("ok"), answer));
    for (auto& d : answer.datagrams) {
      Output o;
      client->on_datagram(d, o, t0);
    }
  }
  EXPECT_TRUE(client->lean());
  EXPECT_EQ(server.received, (std::vector<std::string>{big, big}));
  Output too_big;
  EXPECT_FALSE(client->send(bytes(std::string(16385, 'x')), too_big));
}

TEST(DtlsClientEngine, WrongKeyFailsTheHandshake) {
  auto server_context = make_server();
  auto client_context = make_client("upstream-id", "not-the-key");
  ServerSide server{*server_context, nullptr, {}, 0};
  Output out;
  auto client = client_context->connect(device(), out, t0);
  pump(*client, std::move(out), server);
  EXPECT_NE(client->state(), Engine::State::established);
  ASSERT_TRUE(server.engine);
  EXPECT_NE(server.engine->state(), Engine::State::established);
}

TEST(DtlsClientEngine, UnknownIdentityFailsTheHandshake) {
  auto server_context = make_server();
  auto client_context = make_client("someone-else", "upstream-key");
  ServerSide server{*server_context, nullptr, {}, 0};
  Output out;
  auto client = client_context->connect(device(), out, t0);
  pump(*client, std::move(out), server);
  EXPECT_EQ(client->state(), Engine::State::closed);
  EXPECT_EQ(client->failure(), Failure::fatal_alert_received);
}

TEST(DtlsClientEngine, AsksForTheRetransmissionTimerAndTimesOut) {
  auto client_context = make_client();
  Output out;
  auto client = client_context->connect(device(), out, t0);
  ASSERT_EQ(out.datagrams.size(), 1u);
  // OpenSSL keeps its own (real) clock for the flight timer: the engine asks to be called within
  // retransmit_initial, long before the handshake deadline.
  auto due = client->next_timer();
  ASSERT_TRUE(due);
  EXPECT_GT(*due, t0);
  EXPECT_LE(*due, t0 + 1s);
  Output early;
  client->on_timer(early, t0 + 1ms);
  EXPECT_FALSE(early.closed);
  EXPECT_EQ(client->state(), Engine::State::handshake);
  Output late;
  client->on_timer(late, t0 + 10s);  // handshake_timeout
  EXPECT_TRUE(late.closed);
  EXPECT_EQ(late.failure, Failure::handshake_timeout);
  EXPECT_EQ(client->state(), Engine::State::closed);
  EXPECT_EQ(client->next_timer(), std::nullopt);
}

TEST(DtlsClientEngine, TheServerSendsItsLastFlightAgainWhenTheClientRetransmitsItsFinished) {
  // RFC 6347 4.2.4: the server's last flight (ChangeCipherSpec, Finished) is lost; the client
  // retransmits its own last flight and the server must answer it with its flight again, or the
  // client never completes while the server counts the handshake done.
  auto server_context = make_server();
  auto client_context = make_client();
  ServerSide server{*server_context, nullptr, {}, 0};
  Output out;
  auto client = client_context->connect(device(), out, t0);
  ASSERT_TRUE(client);
  std::vector<Bytes> to_server = std::move(out.datagrams);
  for (int round = 0; round < 10 && !to_server.empty(); ++round) {
    std::vector<Bytes> to_client;
    for (auto& d : to_server) server.deliver(d, to_client, t0);
    to_server.clear();
    if (server.engine && server.engine->state() == Engine::State::established) break;  // its last flight: dropped
    for (auto& d : to_client) {
      Output o;
      client->on_datagram(d, o, t0);
      for (auto& x : o.datagrams) to_server.push_back(std::move(x));
    }
  }
  ASSERT_TRUE(server.engine);
  ASSERT_EQ(server.engine->state(), Engine::State::established);
  ASSERT_EQ(client->state(), Engine::State::handshake);
  // The client's flight timer runs on OpenSSL's own clock: poll it (bounded) until it retransmits.
  std::vector<Bytes> again;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (again.empty() && std::chrono::steady_clock::now() < deadline) {
    Output o;
    client->on_timer(o, t0 + 1ms);
    for (auto& x : o.datagrams) again.push_back(std::move(x));
  }
  ASSERT_FALSE(again.empty()) << "the client never retransmitted its last flight";
  std::vector<Bytes> to_client;
  for (auto& d : again) server.deliver(d, to_client, t0);
  ASSERT_FALSE(to_client.empty()) << "the server did not send its last flight again";
  for (auto& d : to_client) {
    Output o;
    client->on_datagram(d, o, t0);
  }
  EXPECT_EQ(client->state(), Engine::State::established);
}

TEST(DtlsClientEngine, RefusesUnusableSettings) {
  std::string error;
  auto make = [&error](std::string identity, std::string key, std::string ciphers, std::size_t mtu) {
    ClientSettings s;
    s.psk_identity = std::move(identity);
    s.psk_key = std::move(key);
    s.ciphers = std::move(ciphers);
    s.mtu = mtu;
    error.clear();
    return ClientContext::create(std::move(s), &error);
  };
  EXPECT_FALSE(make("id", "", "", 1280));
  EXPECT_NE(error.find("psk key is empty"), std::string::npos);
  EXPECT_FALSE(make(std::string(257, 'x'), "k", "", 1280));
  EXPECT_FALSE(make(std::string("a\0b", 3), "k", "", 1280));
  EXPECT_FALSE(make("id", "k", "", 10));
  // The same AEAD-only policy as the server: a CBC suite would leave the lean layer unusable.
  EXPECT_FALSE(make("id", "k", "PSK-AES128-CBC-SHA256", 1280));
  EXPECT_NE(error.find("AEAD"), std::string::npos) << error;
  EXPECT_TRUE(make("id", "k", "", 1280)) << error;
}

// ---- against a DTLS server that is not ours (plain OpenSSL on memory BIOs) ----

constexpr const char* foreign_key = "upstream-key";

unsigned int foreign_psk(SSL*, const char* identity, unsigned char* psk, unsigned int max_psk_len) {
  if (identity == nullptr || std::string_view(identity) != "upstream-id") return 0;
  const std::size_t n = std::strlen(foreign_key);
  if (n > max_psk_len) return 0;
  std::memcpy(psk, foreign_key, n);
  return static_cast<unsigned int>(n);
}

class ForeignServer {
 public:
  explicit ForeignServer(const char* cipher) {
    ctx_ = SSL_CTX_new(DTLS_server_method());
    SSL_CTX_set_cipher_list(ctx_, cipher);
    SSL_CTX_set_psk_server_callback(ctx_, foreign_psk);
    ssl_ = SSL_new(ctx_);
    rbio_ = BIO_new(BIO_s_mem());
    wbio_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rbio_, -1);
    SSL_set_bio(ssl_, rbio_, wbio_);
    SSL_set_options(ssl_, SSL_OP_NO_QUERY_MTU);
    DTLS_set_link_mtu(ssl_, 1280);
    SSL_set_accept_state(ssl_);
  }
  ~ForeignServer() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  std::vector<std::string> feed(const Bytes& datagram) {
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
  Bytes drain() {
    Bytes out(BIO_ctrl_pending(wbio_));
    if (!out.empty()) BIO_read(wbio_, out.data(), static_cast<int>(out.size()));
    return out;
  }
  void write(const std::string& s) { SSL_write(ssl_, s.data(), static_cast<int>(s.size())); }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;
  BIO* wbio_ = nullptr;
};

// The memory BIO concatenates datagrams; our engine takes whole records, so one drain is fine.
std::vector<std::string> pump_foreign(Engine& client, std::vector<Bytes> to_server, ForeignServer& server,
                                      std::vector<std::string>* at_client = nullptr) {
  std::vector<std::string> at_server;
  for (int round = 0; round < 20; ++round) {
    for (auto& d : to_server) {
      for (auto& r : server.feed(d)) at_server.push_back(r);
    }
    to_server.clear();
    auto back = server.drain();
    if (back.empty()) break;
    Output out;
    client.on_datagram(back, out, t0);
    if (at_client) {
      for (auto& p : out.plaintexts) at_client->push_back(text(p));
    }
    to_server = std::move(out.datagrams);
  }
  return at_server;
}

TEST(DtlsClientEngine, InteroperatesWithAPlainOpenSslServerOnEverySuiteOfTheList) {
  for (const char* suite : {"PSK-AES128-CCM8", "PSK-AES128-CCM", "PSK-AES128-GCM-SHA256"}) {
    SCOPED_TRACE(suite);
    ForeignServer server(suite);
    auto client_context = make_client();
    Output out;
    auto client = client_context->connect(device(), out, t0);
    pump_foreign(*client, std::move(out.datagrams), server);
    ASSERT_EQ(client->state(), Engine::State::established);
    auto at_server = pump_foreign(*client, sent(*client, "GET /a").datagrams, server);
    EXPECT_EQ(at_server, std::vector<std::string>{"GET /a"});
    server.write("2.05 a");
    std::vector<std::string> at_client;
    pump_foreign(*client, {}, server, &at_client);
    EXPECT_EQ(at_client, std::vector<std::string>{"2.05 a"});
    EXPECT_TRUE(client->lean());  // OpenSSL's records open with the derived server_write keys
    at_server = pump_foreign(*client, sent(*client, "GET /b").datagrams, server);
    EXPECT_EQ(at_server, std::vector<std::string>{"GET /b"});  // and ours open at OpenSSL
    server.write("2.05 b");
    at_client.clear();
    pump_foreign(*client, {}, server, &at_client);
    EXPECT_EQ(at_client, std::vector<std::string>{"2.05 b"});
  }
}

}  // namespace
}  // namespace coapgw::dtls
