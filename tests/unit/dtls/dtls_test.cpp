// This file replaces the global operator new/delete to count allocations (no per-peer memory
// for hellos). GCC 12 at -O3 then sees malloc/free pairs it cannot match and warns; the
// replacement is correct.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
// Unit tests for lib/dtls against a real OpenSSL DTLS 1.2 client in memory.
#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>

#include "test_certs.hpp"
#include "test_peer.hpp"

namespace coapgw::dtls {
namespace {

using test::Bytes;
using test::Client;
using test::ClientOptions;
using Verdict = ServerContext::HelloVerdict;
using namespace std::chrono_literals;

// ---- allocation accounting for the "no per-peer memory" test ---------------
std::atomic<long long> g_openssl_live{0};
std::atomic<long long> g_cpp_live{0};

void* counting_malloc(size_t n, const char*, int) {
  auto* p = static_cast<std::size_t*>(std::malloc(n + 16));
  if (p == nullptr) return nullptr;
  *p = n;
  g_openssl_live += static_cast<long long>(n);
  return reinterpret_cast<char*>(p) + 16;
}
void counting_free(void* ptr, const char*, int) {
  if (ptr == nullptr) return;
  auto* p = reinterpret_cast<std::size_t*>(static_cast<char*>(ptr) - 16);
  g_openssl_live -= static_cast<long long>(*p);
  std::free(p);
}
void* counting_realloc(void* ptr, size_t n, const char* f, int l) {
  if (ptr == nullptr) return counting_malloc(n, f, l);
  if (n == 0) {
    counting_free(ptr, f, l);
    return nullptr;
  }
  void* fresh = counting_malloc(n, f, l);
  if (fresh == nullptr) return nullptr;
  auto* old = reinterpret_cast<std::size_t*>(static_cast<char*>(ptr) - 16);
  std::memcpy(fresh, ptr, std::min(*old, n));
  counting_free(ptr, f, l);
  return fresh;
}
// Must run before OpenSSL allocates anything.
const bool g_counting_installed = CRYPTO_set_mem_functions(counting_malloc, counting_realloc, counting_free) == 1;

}  // namespace
}  // namespace coapgw::dtls

void* operator new(std::size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  ++coapgw::dtls::g_cpp_live;
  return p;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  --coapgw::dtls::g_cpp_live;
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }

namespace coapgw::dtls {
namespace {

Address peer_a() { return *Address::parse("192.0.2.10:40000"); }

std::shared_ptr<const PskStore> demo_store() {
  auto store = std::make_shared<PskStore>();
  store->add("demo-device", "demo-secret");
  store->add("other-device", "other-secret");
  return store;
}

std::unique_ptr<ServerContext> make_context(ServerSettings settings = {}) {
  if (!settings.psk && settings.cert_file.empty()) settings.psk = demo_store();
  std::string error;
  auto context = ServerContext::create(settings, &error);
  EXPECT_TRUE(context) << error;
  return context;
}

// Client -> server application data, returns what the server decrypted.
std::vector<std::string> client_to_server(Client& client, Engine& engine, std::string_view text, Output& out) {
  EXPECT_TRUE(client.write(text));
  out.clear();
  engine.on_datagram(client.take(), out, std::chrono::steady_clock::now());
  std::vector<std::string> result;
  for (const auto& p : out.plaintexts) result.push_back(test::to_string(p));
  return result;
}

const auto t0 = std::chrono::steady_clock::now();

TEST(DtlsPsk, HandshakeAndApplicationDataBothWays) {
  auto server = make_context();
  Client client(ClientOptions{});
  auto r = test::handshake(*server, client, peer_a(), t0);
  EXPECT_EQ(r.first, Verdict::hello_verify_sent);
  ASSERT_EQ(r.second, Verdict::accepted);
  ASSERT_TRUE(r.engine);
  EXPECT_TRUE(r.server_saw_established);
  EXPECT_EQ(r.engine->state(), Engine::State::established);
  EXPECT_TRUE(client.established());
  EXPECT_EQ(r.engine->identity(), "demo-device");
  EXPECT_EQ(test::to_string(Bytes(r.engine->psk_key().begin(), r.engine->psk_key().end())), "demo-secret");
  EXPECT_EQ(r.engine->psk_hint(), "coapgw");
  EXPECT_NE(r.engine->native_handle(), nullptr);
  EXPECT_EQ(r.engine->next_timer(), std::nullopt);
  EXPECT_GT(r.engine->memory_estimate(), sizeof(Engine));

  Output out;
  EXPECT_EQ(client_to_server(client, *r.engine, "GET /temp", out), std::vector<std::string>{"GET /temp"});
  out.clear();
  ASSERT_TRUE(r.engine->send(test::to_bytes("2.05 21.5C"), out));
  ASSERT_EQ(out.datagrams.size(), 1u);
  client.receive(out.datagrams);
  ASSERT_EQ(client.received().size(), 1u);
  EXPECT_EQ(client.received()[0], "2.05 21.5C");
  // Too large for one datagram.
  out.clear();
  EXPECT_FALSE(r.engine->send(Bytes(r.engine->max_plaintext() + 1), out));
  EXPECT_EQ(r.engine->bad_records(), 0u);
}

TEST(DtlsPsk, DefaultCipherSuitesNegotiate) {
  auto server = make_context();
  for (const char* suite : {"PSK-AES128-CCM8", "PSK-AES128-CCM", "PSK-AES128-GCM-SHA256"}) {
    ClientOptions options;
    options.ciphers = suite;
    Client client(options);
    auto r = test::handshake(*server, client, peer_a(), t0);
    ASSERT_TRUE(r.engine) << suite;
    EXPECT_EQ(r.engine->state(), Engine::State::established) << suite;
    EXPECT_STREQ(SSL_get_cipher_name(r.engine->native_handle()), suite);
  }
}

TEST(DtlsPsk, HintIsSentAndEmptyHintSendsNone) {
  {
    auto server = make_context();
    Client client(ClientOptions{});
    auto r = test::handshake(*server, client, peer_a(), t0);
    ASSERT_TRUE(client.established());
    EXPECT_TRUE(client.hint_received());
    EXPECT_EQ(client.hint(), "coapgw");
  }
  {
    ServerSettings settings;
    settings.psk_hint = "";
    auto server = make_context(settings);
    Client client(ClientOptions{});
    auto r = test::handshake(*server, client, peer_a(), t0);
    ASSERT_TRUE(client.established());
    EXPECT_FALSE(client.hint_received());
    EXPECT_EQ(r.engine->psk_hint(), "");
  }
}

TEST(DtlsPsk, WrongKeyFailsWithAlert) {
  auto server = make_context();
  ClientOptions options;
  options.key = "not-the-secret";
  Client client(options);
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_TRUE(r.engine);
  EXPECT_EQ(r.engine->state(), Engine::State::closed);
  EXPECT_EQ(r.engine->failure(), Failure::handshake_failed);
  EXPECT_TRUE(r.last.closed);
  EXPECT_EQ(r.last.failure, Failure::handshake_failed);
  ASSERT_FALSE(r.last.datagrams.empty());
  const auto& alert = r.last.datagrams.back();
  ASSERT_EQ(alert.size(), 15u);
  EXPECT_EQ(std::to_integer<int>(alert[0]), 21);   // alert record
  EXPECT_EQ(std::to_integer<int>(alert[13]), 2);   // fatal
  EXPECT_TRUE(client.failed());                    // the client took the alert
  EXPECT_FALSE(client.established());
}

TEST(DtlsPsk, UnknownIdentityFailsWithAlert) {
  auto server = make_context();
  ClientOptions options;
  options.identity = "nobody";
  Client client(options);
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_TRUE(r.engine);
  EXPECT_EQ(r.engine->state(), Engine::State::closed);
  EXPECT_EQ(r.last.failure, Failure::bad_psk_identity);
  EXPECT_TRUE(r.last.closed);
  ASSERT_FALSE(r.last.datagrams.empty());
  EXPECT_EQ(std::to_integer<int>(r.last.datagrams.back()[0]), 21);
  EXPECT_TRUE(client.failed());
  EXPECT_EQ(to_string(Failure::bad_psk_identity), "bad_psk_identity");
}

TEST(DtlsPsk, ReloadedStoreAppliesToNewHandshakes) {
  auto server = make_context();
  auto fresh = std::make_shared<PskStore>();
  fresh->add("new-device", "new-secret");
  server->set_psk_store(fresh);
  ClientOptions options;
  options.identity = "new-device";
  options.key = "new-secret";
  Client client(options);
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_TRUE(r.engine);
  EXPECT_EQ(r.engine->state(), Engine::State::established);
  Client old(ClientOptions{});
  auto r2 = test::handshake(*server, old, peer_a(), t0);
  EXPECT_EQ(r2.last.failure, Failure::bad_psk_identity);
}

TEST(DtlsCookie, HelloVerifyRequestRoundTrip) {
  auto server = make_context();
  Client client(ClientOptions{});
  client.step();
  const Bytes hello = client.take();
  EXPECT_TRUE(looks_like_client_hello(hello));
  Output out;
  auto first = server->on_hello(peer_a(), hello, out, t0);
  EXPECT_EQ(first.verdict, Verdict::hello_verify_sent);
  EXPECT_FALSE(first.engine);
  ASSERT_EQ(out.datagrams.size(), 1u);
  const Bytes& hvr = out.datagrams[0];
  ASSERT_EQ(hvr.size(), 13u + 12u + 3u + 32u);
  EXPECT_EQ(std::to_integer<int>(hvr[0]), 22);
  EXPECT_EQ(std::to_integer<int>(hvr[13]), 3);  // hello_verify_request
  EXPECT_EQ(std::to_integer<int>(hvr[27]), 32);  // cookie length
  // The record sequence number is the ClientHello's.
  EXPECT_TRUE(std::equal(hvr.begin() + 5, hvr.begin() + 11, hello.begin() + 5));
  client.receive(out.datagrams);
  const Bytes second = client.take();
  out.clear();
  auto accepted = server->on_hello(peer_a(), second, out, t0);
  EXPECT_EQ(accepted.verdict, Verdict::accepted);
  ASSERT_TRUE(accepted.engine);
  EXPECT_EQ(accepted.engine->state(), Engine::State::handshake);
  EXPECT_FALSE(out.datagrams.empty());  // ServerHello flight
  EXPECT_EQ(accepted.engine->peer(), peer_a());
}

// Runs the first half of the cookie exchange and returns the cookie-bearing ClientHello.
Bytes cookie_hello(ServerContext& server, Client& client, const Address& peer,
                   std::chrono::steady_clock::time_point now) {
  client.step();
  Output out;
  EXPECT_EQ(server.on_hello(peer, client.take(), out, now).verdict, Verdict::hello_verify_sent);
  client.receive(out.datagrams);
  return client.take();
}

TEST(DtlsCookie, CookieBoundToAddressAndPort) {
  auto server = make_context();
  Client client(ClientOptions{});
  const Bytes hello = cookie_hello(*server, client, peer_a(), t0);
  Output out;
  auto other_port = server->on_hello(*Address::parse("192.0.2.10:40001"), hello, out, t0);
  EXPECT_EQ(other_port.verdict, Verdict::bad_cookie);
  EXPECT_FALSE(other_port.engine);
  EXPECT_EQ(out.datagrams.size(), 1u);  // a fresh HelloVerifyRequest
  out.clear();
  EXPECT_EQ(server->on_hello(*Address::parse("192.0.2.11:40000"), hello, out, t0).verdict, Verdict::bad_cookie);
  out.clear();
  EXPECT_EQ(server->on_hello(*Address::parse("[2001:db8::10]:40000"), hello, out, t0).verdict, Verdict::bad_cookie);
  out.clear();
  EXPECT_EQ(server->on_hello(peer_a(), hello, out, t0).verdict, Verdict::accepted);
}

TEST(DtlsCookie, TamperedCookieRejected) {
  auto server = make_context();
  Client client(ClientOptions{});
  Bytes hello = cookie_hello(*server, client, peer_a(), t0);
  // Cookie starts after record(13) + handshake(12) header, version(2), random(32), session id(1+n), length(1).
  const std::size_t session_len = std::to_integer<std::size_t>(hello[13 + 12 + 34]);
  hello[13 + 12 + 35 + session_len + 1] ^= std::byte{1};
  Output out;
  EXPECT_EQ(server->on_hello(peer_a(), hello, out, t0).verdict, Verdict::bad_cookie);
}

TEST(DtlsCookie, ValidAfterOneRotationInvalidAfterTwo) {
  ServerSettings settings;
  settings.cookie_rotation = 60s;
  {
    auto server = make_context(settings);
    Client client(ClientOptions{});
    const Bytes hello = cookie_hello(*server, client, peer_a(), t0);
    server->rotate_cookie_secret_if_due(t0 + 61s);
    Output out;
    EXPECT_EQ(server->on_hello(peer_a(), hello, out, t0 + 61s).verdict, Verdict::accepted);
  }
  {
    auto server = make_context(settings);
    Client client(ClientOptions{});
    const Bytes hello = cookie_hello(*server, client, peer_a(), t0);
    server->rotate_cookie_secret_if_due(t0 + 61s);
    server->rotate_cookie_secret_if_due(t0 + 122s);
    Output out;
    EXPECT_EQ(server->on_hello(peer_a(), hello, out, t0 + 122s).verdict, Verdict::bad_cookie);
  }
  {
    // A long quiet spell counts as two rotations too.
    auto server = make_context(settings);
    Client client(ClientOptions{});
    const Bytes hello = cookie_hello(*server, client, peer_a(), t0);
    Output out;
    EXPECT_EQ(server->on_hello(peer_a(), hello, out, t0 + 125s).verdict, Verdict::bad_cookie);
  }
}

TEST(DtlsCookie, NotClientHelloAndMalformed) {
  auto server = make_context();
  Output out;
  // Application data record, epoch 1.
  Bytes app = {std::byte{23}, std::byte{0xfe}, std::byte{0xfd}, std::byte{0}, std::byte{1}};
  app.resize(13 + 4);
  app[12] = std::byte{4};
  EXPECT_FALSE(looks_like_client_hello(app));
  EXPECT_EQ(server->on_hello(peer_a(), app, out, t0).verdict, Verdict::not_client_hello);
  // Handshake record, epoch 0, but a ServerHello.
  Bytes server_hello = {std::byte{22}, std::byte{0xfe}, std::byte{0xfd}};
  server_hello.resize(13 + 12 + 40);
  server_hello[12] = std::byte{12 + 40};
  server_hello[13] = std::byte{2};
  EXPECT_FALSE(looks_like_client_hello(server_hello));
  EXPECT_EQ(server->on_hello(peer_a(), server_hello, out, t0).verdict, Verdict::not_client_hello);

  Client client(ClientOptions{});
  client.step();
  const Bytes hello = client.take();
  for (std::size_t cut : {std::size_t{0}, std::size_t{5}, std::size_t{13}, std::size_t{20}, hello.size() - 1}) {
    Bytes truncated(hello.begin(), hello.begin() + static_cast<long>(cut));
    EXPECT_EQ(server->on_hello(peer_a(), truncated, out, t0).verdict, Verdict::malformed) << cut;
  }
  Bytes garbage(64, std::byte{0x5a});
  EXPECT_EQ(server->on_hello(peer_a(), garbage, out, t0).verdict, Verdict::malformed);
  // A ClientHello whose inner length fields lie.
  Bytes lying = hello;
  lying[13 + 12 + 34] = std::byte{200};  // session id length past the end
  EXPECT_EQ(server->on_hello(peer_a(), lying, out, t0).verdict, Verdict::malformed);
  EXPECT_TRUE(out.datagrams.empty());  // nothing answered to any of these
}

TEST(DtlsCookie, HellosWithoutValidCookieKeepNoMemory) {
  if (!g_counting_installed) GTEST_SKIP() << "OpenSSL allocated before the counter was installed";
  auto server = make_context();
  Client client(ClientOptions{});
  client.step();
  const Bytes hello = client.take();
  Client cookie_client(ClientOptions{});
  const Bytes with_cookie = cookie_hello(*server, cookie_client, peer_a(), t0);
  Output out;
  out.datagrams.reserve(4);
  auto run = [&](int count) {
    for (int i = 0; i < count; ++i) {
      out.clear();
      const Address peer = Address::v4({198, 51, 100, static_cast<std::uint8_t>(i % 250)},
                                       static_cast<std::uint16_t>(1024 + i));
      auto r = server->on_hello(peer, i % 2 == 0 ? hello : with_cookie, out, t0);
      ASSERT_NE(r.verdict, Verdict::accepted);
      ASSERT_EQ(out.datagrams.size(), 1u);
    }
    out.clear();
  };
  run(10);  // warm-up: lazily fetched algorithms
  const long long openssl_before = g_openssl_live.load();
  const long long cpp_before = g_cpp_live.load();
  run(10000);
  EXPECT_EQ(g_openssl_live.load(), openssl_before);
  EXPECT_EQ(g_cpp_live.load(), cpp_before);
}

TEST(DtlsTimers, HandshakeTimesOutOnFakeClock) {
  ServerSettings settings;
  settings.handshake_timeout = 30s;
  auto server = make_context(settings);
  Client client(ClientOptions{});
  const Bytes hello = cookie_hello(*server, client, peer_a(), t0);
  Output out;
  auto r = server->on_hello(peer_a(), hello, out, t0);
  ASSERT_TRUE(r.engine);
  const auto next = r.engine->next_timer();
  ASSERT_TRUE(next.has_value());
  EXPECT_LE(*next, t0 + 30s);
  out.clear();
  r.engine->on_timer(out, t0 + 10s);
  EXPECT_EQ(r.engine->state(), Engine::State::handshake);
  out.clear();
  r.engine->on_timer(out, t0 + 30s);
  EXPECT_EQ(r.engine->state(), Engine::State::closed);
  EXPECT_TRUE(out.closed);
  EXPECT_EQ(out.failure, Failure::handshake_timeout);
  EXPECT_EQ(r.engine->next_timer(), std::nullopt);
  // A datagram after the deadline fails the same way.
  Client late(ClientOptions{});
  const Bytes hello2 = cookie_hello(*server, late, peer_a(), t0);
  out.clear();
  auto r2 = server->on_hello(peer_a(), hello2, out, t0);
  late.receive(out.datagrams);
  out.clear();
  r2.engine->on_datagram(late.take(), out, t0 + 31s);
  EXPECT_EQ(out.failure, Failure::handshake_timeout);
}

TEST(DtlsTimers, ServerFlightRetransmittedWhenClientFlightLost) {
  ServerSettings settings;
  settings.retransmit_initial = 20ms;
  auto server = make_context(settings);
  Client client(ClientOptions{});
  const Bytes hello = cookie_hello(*server, client, peer_a(), t0);
  Output out;
  auto r = server->on_hello(peer_a(), hello, out, t0);
  ASSERT_TRUE(r.engine);
  const auto first_flight = out.datagrams;
  client.receive(first_flight);
  ASSERT_FALSE(client.take().empty());  // the client's flight, lost on the way
  // The engine's retransmission timer is OpenSSL's wall clock: poll it.
  out.clear();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (out.datagrams.empty() && std::chrono::steady_clock::now() < deadline) {
    const auto now = std::chrono::steady_clock::now();
    const auto due = r.engine->next_timer();
    ASSERT_TRUE(due.has_value());
    if (now >= *due) r.engine->on_timer(out, now);
    else std::this_thread::sleep_for(2ms);
  }
  // The same handshake messages again (OpenSSL may pack them differently),
  // as epoch-0 handshake records with fresh record sequence numbers.
  ASSERT_FALSE(out.datagrams.empty());
  std::size_t first_bytes = 0, again_bytes = 0;
  for (const auto& d : first_flight) first_bytes += d.size();
  for (const auto& d : out.datagrams) {
    again_bytes += d.size();
    EXPECT_EQ(std::to_integer<int>(d[0]), 22);
    EXPECT_NE(d, first_flight[0]);
  }
  EXPECT_GE(again_bytes, first_bytes);
  EXPECT_EQ(r.engine->state(), Engine::State::handshake);
  // The client answers the retransmission (or its own timer) with its flight again.
  client.receive(out.datagrams);
  Bytes again = client.take();
  const auto client_deadline = std::chrono::steady_clock::now() + 5s;
  while (again.empty() && std::chrono::steady_clock::now() < client_deadline) {
    std::this_thread::sleep_for(10ms);
    client.handle_timeout();
    again = client.take();
  }
  ASSERT_FALSE(again.empty());
  out.clear();
  r.engine->on_datagram(again, out, std::chrono::steady_clock::now());
  EXPECT_TRUE(out.established);
  client.receive(out.datagrams);
  EXPECT_TRUE(client.established());
}

TEST(DtlsTimers, LostServerFinishedIsResentWhenClientRetransmits) {
  auto server = make_context();
  Client client(ClientOptions{});
  const Bytes hello = cookie_hello(*server, client, peer_a(), t0);
  Output out;
  auto r = server->on_hello(peer_a(), hello, out, t0);
  ASSERT_TRUE(r.engine);
  client.receive(out.datagrams);
  out.clear();
  r.engine->on_datagram(client.take(), out, t0);
  ASSERT_TRUE(out.established);
  ASSERT_FALSE(out.datagrams.empty());  // ChangeCipherSpec + Finished, lost on the way
  // The client's own retransmission timer (OpenSSL, wall clock) resends its last flight.
  Bytes again;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (again.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
    client.handle_timeout();
    again = client.take();
  }
  ASSERT_FALSE(again.empty());
  out.clear();
  r.engine->on_datagram(again, out, t0);
  EXPECT_EQ(r.engine->state(), Engine::State::established);
  ASSERT_FALSE(out.datagrams.empty());
  client.receive(out.datagrams);
  EXPECT_TRUE(client.established());
  EXPECT_EQ(r.engine->bad_records(), 0u);
  EXPECT_EQ(client_to_server(client, *r.engine, "after", out), std::vector<std::string>{"after"});
}

TEST(DtlsEndings, CloseNotifyFromPeer) {
  auto server = make_context();
  Client client(ClientOptions{});
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_EQ(r.engine->state(), Engine::State::established);
  client.shutdown();
  Output out;
  r.engine->on_datagram(client.take(), out, t0);
  EXPECT_EQ(r.engine->state(), Engine::State::closed);
  EXPECT_TRUE(out.closed);
  EXPECT_EQ(out.failure, Failure::none);
}

TEST(DtlsEndings, CloseNotifyToPeer) {
  auto server = make_context();
  Client client(ClientOptions{});
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_EQ(r.engine->state(), Engine::State::established);
  Output out;
  r.engine->close(out);
  EXPECT_EQ(r.engine->state(), Engine::State::closed);
  ASSERT_EQ(out.datagrams.size(), 1u);
  client.receive(out.datagrams);
  EXPECT_TRUE(client.closed());
  out.clear();
  EXPECT_FALSE(r.engine->send(test::to_bytes("late"), out));
  EXPECT_TRUE(out.datagrams.empty());
}

// Issue 11 (RFC 6347 4.1.2.7): records that fail to authenticate are discarded, however many
// arrive in a row: anyone can send them with the device's address, so they must never end it.
TEST(DtlsEndings, BadRecordsNeverEndTheSession) {
  auto server = make_context();
  Client client(ClientOptions{});
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_EQ(r.engine->state(), Engine::State::established);
  Engine& engine = *r.engine;
  Output out;
  auto tampered = [&] {
    EXPECT_TRUE(client.write("payload"));
    Bytes d = client.take();
    d.back() ^= std::byte{0x01};  // breaks the AEAD tag
    return d;
  };
  for (std::uint32_t i = 1; i <= 200; ++i) {
    out.clear();
    engine.on_datagram(tampered(), out, t0);
    EXPECT_TRUE(out.plaintexts.empty());
    EXPECT_FALSE(out.closed);
    EXPECT_EQ(engine.bad_records(), i);
  }
  EXPECT_EQ(engine.state(), Engine::State::established);
  EXPECT_TRUE(client.write("good"));
  const Bytes good = client.take();
  out.clear();
  engine.on_datagram(good, out, t0);
  ASSERT_EQ(out.plaintexts.size(), 1u);
  // Replays are dropped and counted, but do not end the session.
  for (int i = 0; i < 20; ++i) {
    out.clear();
    engine.on_datagram(good, out, t0);
    EXPECT_TRUE(out.plaintexts.empty());
  }
  EXPECT_EQ(engine.bad_records(), 220u);
  EXPECT_EQ(engine.state(), Engine::State::established);
}

TEST(DtlsEndings, PlaintextAlertCannotKillEstablishedSession) {
  auto server = make_context();
  Client client(ClientOptions{});
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_EQ(r.engine->state(), Engine::State::established);
  const Bytes alert = {std::byte{21}, std::byte{0xfe}, std::byte{0xfd}, std::byte{0}, std::byte{0},
                       std::byte{0},  std::byte{0},    std::byte{0},    std::byte{0}, std::byte{0},
                       std::byte{50}, std::byte{0},    std::byte{2},    std::byte{2}, std::byte{40}};
  Output out;
  r.engine->on_datagram(alert, out, t0);
  EXPECT_EQ(r.engine->state(), Engine::State::established);
  EXPECT_EQ(client_to_server(client, *r.engine, "still here", out), std::vector<std::string>{"still here"});
}

// Issue 11: plaintext alerts and junk records injected into a handshake (by anyone who knows the
// device's address) are dropped and counted; the handshake goes on and completes.
TEST(DtlsEndings, UnauthenticatedJunkCannotKillAHandshake) {
  auto server = make_context();
  Client client(ClientOptions{});
  Output out;
  client.step();
  server->on_hello(peer_a(), client.take(), out, t0);
  client.receive(out.datagrams);
  out.clear();
  auto hello = server->on_hello(peer_a(), client.take(), out, t0);
  ASSERT_TRUE(hello.engine);
  auto record = [](std::uint8_t type, std::uint16_t epoch, std::uint8_t seq, const Bytes& body) {
    Bytes r(13 + body.size());
    const std::uint8_t header[13] = {type, 0xfe, 0xfd, static_cast<std::uint8_t>(epoch >> 8),
                                     static_cast<std::uint8_t>(epoch & 0xff), 0, 0, 0, 0, 0, seq,
                                     static_cast<std::uint8_t>(body.size() >> 8),
                                     static_cast<std::uint8_t>(body.size() & 0xff)};
    for (std::size_t i = 0; i < 13; ++i) r[i] = std::byte{header[i]};
    for (std::size_t i = 0; i < body.size(); ++i) r[13 + i] = body[i];
    return r;
  };
  const Bytes alert = record(21, 0, 7, {std::byte{2}, std::byte{40}});
  // What a spoofer sends without keys: alerts, junk "handshake" bytes, a ServerHello-typed
  // message, a fragment claiming more than it holds, epoch-0 application data, a ChangeCipherSpec
  // with a wrong body, a later epoch, and a truncated record.
  const std::vector<Bytes> junk = {
      alert,
      record(22, 0, 8, Bytes(30, std::byte{0x5a})),
      record(22, 0, 9, {std::byte{2}, std::byte{0}, std::byte{0}, std::byte{4}, std::byte{0}, std::byte{2},
                        std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{4},
                        std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}}),
      record(22, 0, 10, {std::byte{16}, std::byte{0}, std::byte{0}, std::byte{9}, std::byte{0}, std::byte{2},
                         std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{9},
                         std::byte{1}}),
      record(23, 0, 11, Bytes(20, std::byte{1})),
      record(20, 0, 12, {std::byte{2}}),
      record(22, 2, 13, Bytes(40, std::byte{3})),
      Bytes{std::byte{22}, std::byte{0xfe}, std::byte{0xfd}, std::byte{0}},
  };
  Output spoofed;
  for (const auto& j : junk) hello.engine->on_datagram(j, spoofed, t0);
  EXPECT_FALSE(spoofed.closed) << to_string(spoofed.failure);
  EXPECT_EQ(hello.engine->state(), Engine::State::handshake);
  EXPECT_EQ(hello.engine->bad_records(), junk.size());
  bool established = false;
  for (int round = 0; round < 16 && !established; ++round) {
    client.receive(out.datagrams);
    Bytes next = client.take();
    if (next.empty()) break;
    // The alert also rides in front of the client's own flight.
    Bytes with_alert = alert;
    with_alert.insert(with_alert.end(), next.begin(), next.end());
    out.clear();
    hello.engine->on_datagram(with_alert, out, t0);
    ASSERT_FALSE(out.closed) << to_string(out.failure);
    established = out.established;
  }
  EXPECT_TRUE(established);
  EXPECT_EQ(hello.engine->state(), Engine::State::established);
}

TEST(DtlsEndings, RenegotiationRefusedSessionKept) {
  auto server = make_context();
  Client client(ClientOptions{});
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_EQ(r.engine->state(), Engine::State::established);
  ASSERT_EQ(SSL_renegotiate(client.ssl()), 1);
  SSL_do_handshake(client.ssl());
  const Bytes renegotiation = client.take();
  ASSERT_FALSE(renegotiation.empty());
  Output out;
  r.engine->on_datagram(renegotiation, out, t0);
  EXPECT_EQ(r.engine->state(), Engine::State::established);
  EXPECT_FALSE(out.datagrams.empty());  // no_renegotiation warning
  EXPECT_EQ(r.engine->bad_records(), 0u);
  out.clear();
  EXPECT_TRUE(r.engine->send(test::to_bytes("still up"), out));
}

class DtlsPki : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pki_ = new test::TestPki(); }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }
  static ServerSettings pki_settings(bool with_ca) {
    ServerSettings s;
    s.cert_file = pki_->cert("server");
    s.key_file = pki_->key("server");
    if (with_ca) s.ca_file = pki_->cert("ca");
    return s;
  }
  static ClientOptions cert_client(const std::string& name) {
    ClientOptions o;
    o.psk = false;
    o.ciphers = "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256";
    if (!name.empty()) {
      o.cert_file = pki_->cert(name);
      o.key_file = pki_->key(name);
    }
    o.verify_server = true;
    o.trust_file = pki_->cert("ca");
    return o;
  }
  static test::TestPki* pki_;
};
test::TestPki* DtlsPki::pki_ = nullptr;

TEST_F(DtlsPki, ServerCertificateWithoutClientCa) {
  auto server = make_context(pki_settings(false));
  Client client(cert_client(""));
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_TRUE(r.engine);
  EXPECT_EQ(r.engine->state(), Engine::State::established);
  EXPECT_TRUE(client.established());
  EXPECT_EQ(r.engine->identity(), "");
  EXPECT_TRUE(r.engine->psk_key().empty());
}

TEST_F(DtlsPki, ClientCertificateCommonNameIsIdentity) {
  auto server = make_context(pki_settings(true));
  Client client(cert_client("client"));
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_TRUE(r.engine);
  EXPECT_EQ(r.engine->state(), Engine::State::established);
  EXPECT_EQ(r.engine->identity(), "device-42");
  Output out;
  EXPECT_EQ(client_to_server(client, *r.engine, "hi", out), std::vector<std::string>{"hi"});
}

TEST_F(DtlsPki, ClientWithoutCertificateRefusedWhenCaSet) {
  auto server = make_context(pki_settings(true));
  Client client(cert_client(""));
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_TRUE(r.engine);
  EXPECT_EQ(r.engine->state(), Engine::State::closed);
  EXPECT_EQ(r.last.failure, Failure::handshake_failed);
  EXPECT_FALSE(r.last.datagrams.empty());  // alert
}

TEST_F(DtlsPki, ClientCertificateFromUnknownCaRefused) {
  auto server = make_context(pki_settings(true));
  Client client(cert_client("rogue"));
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_TRUE(r.engine);
  EXPECT_EQ(r.engine->state(), Engine::State::closed);
  EXPECT_EQ(r.last.failure, Failure::handshake_failed);
}

TEST_F(DtlsPki, FatalAlertFromPeerLeavesTheHandshakeToTimeOut) {
  // The client does not trust the server's certificate and says so with a fatal alert. That
  // alert is plaintext, which anyone could have sent with the client's address (issue 11): it
  // is dropped and counted, and the handshake ends by its timeout instead.
  auto server = make_context(pki_settings(false));
  ClientOptions options = cert_client("");
  options.trust_file = pki_->cert("rogue");
  Client client(options);
  auto r = test::handshake(*server, client, peer_a(), t0);
  ASSERT_TRUE(r.engine);
  EXPECT_EQ(r.engine->state(), Engine::State::handshake);
  EXPECT_FALSE(r.last.closed);
  EXPECT_GE(r.engine->bad_records(), 1u);
  Output out;
  r.engine->on_timer(out, t0 + server->settings().handshake_timeout);
  EXPECT_EQ(r.engine->state(), Engine::State::closed);
  EXPECT_EQ(out.failure, Failure::handshake_timeout);
}

TEST_F(DtlsPki, PskAndPkiTogether) {
  ServerSettings settings = pki_settings(true);
  settings.psk = demo_store();
  auto server = make_context(settings);
  Client psk_client(ClientOptions{});
  auto r1 = test::handshake(*server, psk_client, peer_a(), t0);
  ASSERT_TRUE(r1.engine);
  EXPECT_EQ(r1.engine->state(), Engine::State::established);
  EXPECT_EQ(r1.engine->identity(), "demo-device");
  Client cert(cert_client("client"));
  auto r2 = test::handshake(*server, cert, *Address::parse("[2001:db8::1]:5684"), t0);
  ASSERT_TRUE(r2.engine);
  EXPECT_EQ(r2.engine->state(), Engine::State::established);
  EXPECT_EQ(r2.engine->identity(), "device-42");
}

TEST(DtlsContext, BadSettingsAreErrors) {
  std::string error;
  ServerSettings s;
  s.ciphers = "NO-SUCH-CIPHER";
  EXPECT_FALSE(ServerContext::create(s, &error));
  EXPECT_NE(error.find("cipher"), std::string::npos);
  s = {};
  s.cert_file = "/nonexistent/cert.pem";
  s.key_file = "/nonexistent/key.pem";
  EXPECT_FALSE(ServerContext::create(s, &error));
  s = {};
  s.ca_file = "/tmp/ca.pem";
  EXPECT_FALSE(ServerContext::create(s, &error));
  s = {};
  s.mtu = 100;
  EXPECT_FALSE(ServerContext::create(s, &error));
}

TEST(DtlsPskStore, MillionIdentities) {
  PskStore store;
  constexpr int count = 1'000'000;
  store.reserve(count);
  for (int i = 0; i < count; ++i) store.add("device-" + std::to_string(i), "key-" + std::to_string(i));
  ASSERT_EQ(store.size(), static_cast<std::size_t>(count));
  for (int i : {0, 1, 4242, 999'999}) {
    auto key = store.find("device-" + std::to_string(i));
    ASSERT_TRUE(key.has_value());
    EXPECT_EQ(*key, "key-" + std::to_string(i));
  }
  EXPECT_FALSE(store.find("device-1000000").has_value());
  EXPECT_FALSE(store.find("").has_value());
  store.add("device-7", "replaced");
  EXPECT_EQ(*store.find("device-7"), "replaced");
}

}  // namespace
}  // namespace coapgw::dtls
