// Revocation checks (issue 11, point 2): a session's credentials against the current PSK store and
// client CA; the peer certificate chain kept past the lean switch and through the persist format;
// a reloaded CA applies to new handshakes.
#include <gtest/gtest.h>

#include <ctime>

#include "dtls/credentials.hpp"
#include "dtls/engine.hpp"
#include "dtls/server_context.hpp"
#include "dtls/session_state.hpp"
#include "test_certs.hpp"
#include "test_peer.hpp"

namespace coapgw::dtls {
namespace {

using test::Bytes;
using test::Client;
using test::ClientOptions;

const auto t0 = std::chrono::steady_clock::now();
Address peer() { return *Address::parse("192.0.2.20:40000"); }

std::shared_ptr<const PskStore> store_with(std::string identity, std::string key) {
  auto s = std::make_shared<PskStore>();
  s->add(std::move(identity), std::move(key));
  return s;
}

Bytes bytes_of(std::string_view s) { return test::to_bytes(s); }

TEST(Credentials, PskIdentityAndKeyAgainstTheStore) {
  const Bytes key = bytes_of("demo-secret");
  const Credentials c{"demo-device", key, {}};
  EXPECT_EQ(check(c, store_with("demo-device", "demo-secret").get(), nullptr), Standing::valid);
  EXPECT_EQ(check(c, store_with("demo-device", "demo-secret2").get(), nullptr), Standing::key_changed);
  EXPECT_EQ(check(c, store_with("demo-device", "demo-secreT").get(), nullptr), Standing::key_changed);
  EXPECT_EQ(check(c, store_with("other", "demo-secret").get(), nullptr), Standing::identity_unknown);
  EXPECT_EQ(check(c, nullptr, nullptr), Standing::identity_unknown);
}

TEST(Credentials, CertificateSessionWithoutCertificate) {
  // No client certificate was asked for: fine while none is required.
  EXPECT_EQ(check(Credentials{}, nullptr, nullptr), Standing::valid);
  // An identity without the certificate that proved it (a version 1 persist entry) is not trusted.
  EXPECT_EQ(check(Credentials{"device-42", {}, {}}, nullptr, nullptr), Standing::certificate_rejected);
}

class CertSessions : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pki_ = new test::TestPki(); }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }
  static std::unique_ptr<ServerContext> server() {
    ServerSettings s;
    s.cert_file = pki_->cert("server");
    s.key_file = pki_->key("server");
    s.ca_file = pki_->cert("ca");
    std::string error;
    auto context = ServerContext::create(s, &error);
    EXPECT_TRUE(context) << error;
    return context;
  }
  static ClientOptions client(const std::string& name) {
    ClientOptions o;
    o.psk = false;
    o.ciphers = "ECDHE-ECDSA-AES128-CCM8";
    o.cert_file = pki_->cert(name);
    o.key_file = pki_->key(name);
    return o;
  }
  static std::shared_ptr<const TrustStore> trust(const std::string& name) {
    std::string error;
    auto t = TrustStore::load(pki_->cert(name), &error);
    EXPECT_TRUE(t) << error;
    return t;
  }
  static test::TestPki* pki_;
};
test::TestPki* CertSessions::pki_ = nullptr;

TEST_F(CertSessions, ChainIsKeptAndVerifiedAgainstTheCurrentCa) {
  auto context = server();
  ASSERT_NE(context->trust(), nullptr);
  Client c(client("client"));
  auto r = test::handshake(*context, c, peer(), t0);
  ASSERT_TRUE(r.engine);
  ASSERT_EQ(r.engine->state(), Engine::State::established);
  auto creds = r.engine->credentials();
  EXPECT_EQ(creds.identity, "device-42");
  ASSERT_EQ(creds.peer_certs.size(), 1u);
  EXPECT_EQ(check(creds, nullptr, context->trust()), Standing::valid);
  EXPECT_EQ(check(creds, nullptr, trust("ca").get()), Standing::valid);
  // Another CA (the rogue's self-signed certificate as the only anchor): no longer chains.
  EXPECT_EQ(check(creds, nullptr, trust("rogue").get()), Standing::certificate_rejected);
  EXPECT_EQ(check(creds, nullptr, nullptr), Standing::certificate_rejected);
  // The test certificates are valid for a day: two days from now the same chain has expired.
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  EXPECT_TRUE(trust("ca")->verifies(creds.peer_certs, now));
  EXPECT_FALSE(trust("ca")->verifies(creds.peer_certs, now + 2 * 24 * 3600));
  // A damaged certificate never verifies.
  auto damaged = std::vector<std::vector<std::byte>>(creds.peer_certs.begin(), creds.peer_certs.end());
  damaged[0][damaged[0].size() / 2] ^= std::byte{0x01};
  EXPECT_EQ(check(Credentials{"device-42", {}, damaged}, nullptr, trust("ca").get()), Standing::certificate_rejected);
}

TEST_F(CertSessions, ChainSurvivesTheLeanSwitchAndThePersistFormat) {
  auto context = server();
  Client c(client("client"));
  auto r = test::handshake(*context, c, peer(), t0);
  ASSERT_TRUE(r.engine);
  ASSERT_TRUE(c.write("prove"));
  Output out;
  r.engine->on_datagram(c.take(), out, t0);
  ASSERT_TRUE(r.engine->lean());
  ASSERT_EQ(r.engine->credentials().peer_certs.size(), 1u);
  auto state = r.engine->export_state();
  ASSERT_TRUE(state);
  ASSERT_EQ(state->peer_certs.size(), 1u);
  auto bytes = serialize(*state);
  ASSERT_FALSE(bytes.empty());
  auto back = deserialize(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->peer_certs, state->peer_certs);
  auto imported = Engine::import_state(*context, *back, 1u << 16);
  ASSERT_TRUE(imported);
  EXPECT_EQ(check(imported->credentials(), nullptr, context->trust()), Standing::valid);
  EXPECT_EQ(check(imported->credentials(), nullptr, trust("rogue").get()), Standing::certificate_rejected);
}

TEST_F(CertSessions, ReloadedCaAppliesToNewHandshakesAndMovesTheGeneration) {
  auto context = server();
  const auto before = context->credentials_generation();
  Client early(client("client"));
  auto started = test::handshake(*context, early, peer(), t0);
  ASSERT_TRUE(started.engine);
  EXPECT_EQ(started.engine->credentials_generation(), before);
  context->set_credentials(nullptr, trust("rogue"));
  EXPECT_NE(context->credentials_generation(), before);
  EXPECT_NE(started.engine->credentials_generation(), context->credentials_generation());
  Client late(client("client"));
  auto refused = test::handshake(*context, late, *Address::parse("192.0.2.21:40000"), t0);
  ASSERT_TRUE(refused.engine);
  EXPECT_EQ(refused.engine->state(), Engine::State::closed);
  EXPECT_EQ(refused.last.failure, Failure::handshake_failed);
}

TEST(SessionStateFormat, VersionOneIsStillRead) {
  SessionState s;
  s.peer = peer();
  s.identity = "demo-device";
  const auto key = bytes_of("demo-secret");
  s.psk_key.assign(key.begin(), key.end());
  s.cipher_suite = 0xC0A8;  // PSK-AES128-CCM8
  s.client_write_key.assign(16, std::byte{1});
  s.server_write_key.assign(16, std::byte{2});
  s.client_write_iv.assign(4, std::byte{3});
  s.server_write_iv.assign(4, std::byte{4});
  auto v4 = serialize(s);
  ASSERT_FALSE(v4.empty());
  EXPECT_EQ(v4[4], std::byte{4});
  // Version 4 ends with registry_keyed (0), version 3 with the two CID lengths (0, 0), version 2
  // with the certificate count (0).
  EXPECT_EQ(v4.back(), std::byte{0});
  auto v3 = v4;
  v3[4] = std::byte{3};
  v3.pop_back();
  auto back3 = deserialize(v3);
  ASSERT_TRUE(back3);
  EXPECT_FALSE(back3->registry_keyed);
  ASSERT_GE(v3.size(), 3u);
  EXPECT_EQ(v3[v3.size() - 3], std::byte{0});
  auto v2 = v3;
  v2[4] = std::byte{2};
  v2.resize(v2.size() - 2);
  auto back2 = deserialize(v2);
  ASSERT_TRUE(back2);
  EXPECT_TRUE(back2->local_cid.empty());
  auto v1 = v2;
  v1[4] = std::byte{1};
  v1.pop_back();
  auto back = deserialize(v1);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->identity, "demo-device");
  EXPECT_TRUE(back->peer_certs.empty());
  // Connection IDs go through version 3.
  s.local_cid = {std::byte{7}, std::byte{1}, std::byte{2}};
  s.peer_cid = {std::byte{9}};
  const auto with_cid = deserialize(serialize(s));
  ASSERT_TRUE(with_cid);
  EXPECT_EQ(with_cid->local_cid, s.local_cid);
  EXPECT_EQ(with_cid->peer_cid, s.peer_cid);
  // Too many or empty certificates are refused both ways.
  s.peer_certs.assign(max_peer_certs + 1, Bytes{std::byte{0x30}});
  EXPECT_TRUE(serialize(s).empty());
  s.peer_certs = {Bytes{}};
  EXPECT_TRUE(serialize(s).empty());
}

}  // namespace
}  // namespace coapgw::dtls
