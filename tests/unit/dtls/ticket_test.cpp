// RFC 5077 session tickets on the server role, in memory: a device whose session is gone resumes
// with an abbreviated handshake (plain OpenSSL client and the engine's client role), the key ring
// rotates on the injected wall clock with the previous period still accepted, a ticket sealed
// under a key we do not know (another gateway's, or long expired) gets a full handshake, gateways
// sharing the secrets resume each other's tickets, a reload that removed or changed the PSK keeps
// the ticket from resuming, and a resumed handshake negotiates a new RFC 9146 Connection ID.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "dtls/client_context.hpp"
#include "dtls/server_context.hpp"
#include "dtls/ticket_keys.hpp"
#include "test_certs.hpp"
#include "test_peer.hpp"

namespace coapgw::dtls {
namespace {

using namespace std::chrono_literals;
using test::Bytes;

const auto t0 = std::chrono::steady_clock::time_point{} + 1000s;
const Address peer = *Address::parse("192.0.2.40:5684");

SecretBytes secret(char fill) { return SecretBytes(32, static_cast<std::byte>(fill)); }

struct Clock {
  std::int64_t now = 1'800'000'000;
};

std::shared_ptr<PskStore> store_with(std::string_view key) {
  auto store = std::make_shared<PskStore>();
  store->add("demo-device", std::string(key));
  return store;
}

std::unique_ptr<ServerContext> ticket_server(Clock& clock, std::vector<SecretBytes> secrets = {secret('a')},
                                             std::size_t cid_length = 0, bool tickets = true) {
  ServerSettings s;
  s.psk = store_with("demo-secret");
  s.connection_id = {cid_length, 0x42};
  s.tickets.enabled = tickets;
  s.tickets.secrets = std::move(secrets);
  s.tickets.rotation = 3600s;
  s.tickets.wall_clock = [&clock] { return clock.now; };
  std::string error;
  auto c = ServerContext::create(s, &error);
  EXPECT_TRUE(c) << error;
  return c;
}

// A plain OpenSSL client handshake; returns the client's session (its ticket) and whether the
// server engine saw a resumption.
struct Run {
  bool established = false;
  bool resumed = false;      // the engine's view
  bool client_reused = false;
  std::string identity;
  SSL_SESSION* session = nullptr;  // owned: free with SSL_SESSION_free
  Failure failure = Failure::none;
};

Run openssl_handshake(ServerContext& server, SSL_SESSION* resume = nullptr, test::ClientOptions options = {}) {
  options.resume = resume;
  test::Client client(options);
  auto r = test::handshake(server, client, peer, t0);
  Run run;
  if (r.engine) {
    run.established = r.engine->state() == Engine::State::established && client.established();
    run.resumed = r.engine->resumed();
    run.identity = r.engine->identity();
    run.failure = r.engine->failure();
    if (run.established) {
      // Application data both ways over the resumed keys.
      EXPECT_TRUE(client.write("GET /t"));
      Output out;
      r.engine->on_datagram(client.take(), out, t0);
      EXPECT_EQ(out.plaintexts.size(), 1u);
      Output answer;
      EXPECT_TRUE(r.engine->send(test::to_bytes("2.05"), answer));
      client.receive(answer.datagrams);
      EXPECT_EQ(client.received(), std::vector<std::string>{"2.05"});
    }
  }
  run.client_reused = SSL_session_reused(client.ssl()) == 1;
  run.session = SSL_get1_session(client.ssl());
  // OpenSSL marks the session of an SSL object freed without a shutdown as not resumable.
  client.shutdown();
  return run;
}

struct SessionGuard {
  SSL_SESSION* s;
  ~SessionGuard() { SSL_SESSION_free(s); }
};

TEST(Tickets, ADeviceWhoseSessionIsGoneResumesWithItsTicket) {
  Clock clock;
  auto server = ticket_server(clock);
  auto first = openssl_handshake(*server);
  SessionGuard g1{first.session};
  ASSERT_TRUE(first.established);
  EXPECT_FALSE(first.resumed);
  ASSERT_EQ(SSL_SESSION_has_ticket(first.session), 1);

  auto second = openssl_handshake(*server, first.session);
  SessionGuard g2{second.session};
  ASSERT_TRUE(second.established);
  EXPECT_TRUE(second.resumed);
  EXPECT_TRUE(second.client_reused);
  EXPECT_EQ(second.identity, "demo-device");  // the ticket's identity, checked against the store
}

TEST(Tickets, OffByDefaultNoTicketIsIssued) {
  Clock clock;
  auto server = ticket_server(clock, {}, 0, false);
  auto first = openssl_handshake(*server);
  SessionGuard g{first.session};
  ASSERT_TRUE(first.established);
  EXPECT_EQ(SSL_SESSION_has_ticket(first.session), 0);
}

TEST(Tickets, KeysRotateAndThePreviousPeriodIsStillAccepted) {
  Clock clock;
  auto server = ticket_server(clock);
  auto first = openssl_handshake(*server);
  SessionGuard g1{first.session};
  clock.now += 3600;  // next period: the ticket's key is the previous one, still accepted (and renewed)
  auto second = openssl_handshake(*server, first.session);
  SessionGuard g2{second.session};
  EXPECT_TRUE(second.resumed);

  clock.now += 2 * 3600;  // two periods later: that key is gone
  auto third = openssl_handshake(*server, first.session);
  SessionGuard g3{third.session};
  ASSERT_TRUE(third.established);  // a full handshake
  EXPECT_FALSE(third.resumed);
  EXPECT_FALSE(third.client_reused);
}

TEST(TicketKeyRing, NamesDifferPerPeriodAndSecretAndOnlyTwoPeriodsAreFound) {
  std::vector<SecretBytes> secrets;
  secrets.push_back(secret('a'));
  secrets.push_back(secret('b'));
  TicketKeys keys(std::move(secrets), 100s);
  const auto now = keys.for_new_ticket(1000)->name;
  EXPECT_FALSE(keys.find(now, 1000).renew);
  ASSERT_NE(keys.find(now, 1000).key, nullptr);
  EXPECT_TRUE(keys.find(now, 1100).renew);  // previous period
  EXPECT_EQ(keys.find(now, 1200).key, nullptr);
  const auto later = keys.for_new_ticket(1100)->name;
  EXPECT_NE(now, later);
  TicketKeys second_only([] {
    std::vector<SecretBytes> v;
    v.push_back(secret('b'));
    return v;
  }(), 100s);
  const auto b_name = second_only.for_new_ticket(1000)->name;
  ASSERT_NE(keys.find(b_name, 1000).key, nullptr);  // an older secret still opens (and renews)
  EXPECT_TRUE(keys.find(b_name, 1000).renew);
  EXPECT_FALSE(TicketKeys::check({}, 100s).empty());
  std::vector<SecretBytes> short_one;
  short_one.emplace_back(16);
  EXPECT_FALSE(TicketKeys::check(short_one, 100s).empty());
}

TEST(Tickets, ATicketUnderAnUnknownKeyGetsAFullHandshake) {
  Clock clock;
  auto issuer = ticket_server(clock, {secret('a')});
  auto other = ticket_server(clock, {secret('z')});
  auto first = openssl_handshake(*issuer);
  SessionGuard g1{first.session};
  auto second = openssl_handshake(*other, first.session);
  SessionGuard g2{second.session};
  ASSERT_TRUE(second.established);
  EXPECT_FALSE(second.resumed);
  EXPECT_EQ(SSL_SESSION_has_ticket(second.session), 1);  // and a new ticket from this server
}

TEST(Tickets, GatewaysSharingTheSecretResumeEachOthersTickets) {
  Clock clock;
  auto a = ticket_server(clock, {secret('s')});
  auto b = ticket_server(clock, {secret('s')});
  auto first = openssl_handshake(*a);
  SessionGuard g1{first.session};
  auto second = openssl_handshake(*b, first.session);
  SessionGuard g2{second.session};
  EXPECT_TRUE(second.resumed);
}

TEST(Tickets, ATicketForARemovedIdentityDoesNotResume) {
  Clock clock;
  auto server = ticket_server(clock);
  auto first = openssl_handshake(*server);
  SessionGuard g1{first.session};
  ASSERT_EQ(SSL_SESSION_has_ticket(first.session), 1);
  auto other = std::make_shared<PskStore>();
  other->add("someone-else", "x");
  server->set_psk_store(other);  // a reload removed demo-device
  auto second = openssl_handshake(*server, first.session);
  SessionGuard g2{second.session};
  EXPECT_FALSE(second.established);
  EXPECT_FALSE(second.resumed);
  EXPECT_FALSE(second.client_reused);
  EXPECT_EQ(second.failure, Failure::bad_psk_identity);  // the full handshake it fell back to
}

TEST(Tickets, ATicketForAChangedKeyDoesNotResume) {
  Clock clock;
  auto server = ticket_server(clock);
  auto first = openssl_handshake(*server);
  SessionGuard g1{first.session};
  server->set_psk_store(store_with("a-new-secret"));
  auto second = openssl_handshake(*server, first.session);
  SessionGuard g2{second.session};
  EXPECT_FALSE(second.established);  // full handshake with the old key: the Finished does not verify
  EXPECT_FALSE(second.resumed);
}

TEST(Tickets, ACertificateSessionResumesWhileItsCertificateStillChainsToTheCa) {
  test::TestPki pki;
  Clock clock;
  ServerSettings s;
  s.cert_file = pki.cert("server");
  s.key_file = pki.key("server");
  s.ca_file = pki.cert("ca");
  s.tickets.enabled = true;
  s.tickets.wall_clock = [&clock] { return clock.now; };
  std::string error;
  auto server = ServerContext::create(s, &error);
  ASSERT_TRUE(server) << error;
  test::ClientOptions options;
  options.psk = false;
  options.ciphers = "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256";
  options.cert_file = pki.cert("client");
  options.key_file = pki.key("client");
  auto first = openssl_handshake(*server, nullptr, options);
  SessionGuard g1{first.session};
  ASSERT_TRUE(first.established);
  auto second = openssl_handshake(*server, first.session, options);
  SessionGuard g2{second.session};
  ASSERT_TRUE(second.established);
  EXPECT_TRUE(second.resumed);
  EXPECT_EQ(second.identity, "device-42");  // the subject CN of the certificate in the ticket

  // A reload with another CA: the certificate in the ticket no longer chains, a full handshake
  // (which then fails the same way).
  auto rogue_ca = TrustStore::load(pki.cert("rogue"), &error);
  ASSERT_TRUE(rogue_ca) << error;
  server->set_credentials(nullptr, rogue_ca);
  auto third = openssl_handshake(*server, first.session, options);
  SessionGuard g3{third.session};
  EXPECT_FALSE(third.resumed);
  EXPECT_FALSE(third.client_reused);
}

// The engine's client role with a Connection ID, as coapgw-bench and coapgw-cid-client use it.
struct EnginePair {
  ServerContext& server_context;
  ClientContext& client_context;
  std::unique_ptr<Engine> server, client;
  std::vector<std::string> at_server;

  void pump(Output first) {
    std::vector<Bytes> to_server = std::move(first.datagrams);
    for (int round = 0; round < 20 && !to_server.empty(); ++round) {
      std::vector<Bytes> to_client;
      for (auto& d : to_server) {
        Output out;
        if (!server) {
          if (auto r = server_context.on_hello(peer, d, out, t0); r.engine) server = std::move(r.engine);
        } else {
          server->on_datagram(d, out, t0);
        }
        for (auto& p : out.plaintexts) at_server.push_back(test::to_string(Bytes(p.begin(), p.end())));
        for (auto& o : out.datagrams) to_client.push_back(std::move(o));
      }
      to_server.clear();
      for (auto& d : to_client) {
        Output out;
        client->on_datagram(d, out, t0);
        for (auto& o : out.datagrams) to_server.push_back(std::move(o));
      }
    }
  }
  void connect(std::span<const std::byte> resume = {}) {
    Output out;
    client = client_context.connect(peer, out, t0, resume);
    ASSERT_TRUE(client);
    pump(std::move(out));
    ASSERT_TRUE(server);
    ASSERT_EQ(server->state(), Engine::State::established);
    ASSERT_EQ(client->state(), Engine::State::established);
  }
  void request(std::string_view text) {
    Output out;
    ASSERT_TRUE(client->send(test::to_bytes(text), out));
    pump(std::move(out));
  }
};

TEST(Tickets, ATicketWithoutAClientCertificateDoesNotSkipOneOnAServerThatAsksForIt) {
  test::TestPki pki;
  Clock clock;
  auto make = [&](bool with_ca) {
    ServerSettings s;
    s.cert_file = pki.cert("server");
    s.key_file = pki.key("server");
    if (with_ca) s.ca_file = pki.cert("ca");
    s.tickets.enabled = true;
    s.tickets.secrets.push_back(secret('p'));  // shared by both gateways
    s.tickets.wall_clock = [&clock] { return clock.now; };
    std::string error;
    auto c = ServerContext::create(s, &error);
    EXPECT_TRUE(c) << error;
    return c;
  };
  auto open_gateway = make(false), strict_gateway = make(true);
  test::ClientOptions options;
  options.psk = false;
  options.ciphers = "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256";
  options.cert_file = pki.cert("client");
  options.key_file = pki.key("client");
  auto first = openssl_handshake(*open_gateway, nullptr, options);  // no certificate asked for
  SessionGuard g1{first.session};
  ASSERT_TRUE(first.established);
  auto same = openssl_handshake(*open_gateway, first.session, options);
  SessionGuard g2{same.session};
  EXPECT_TRUE(same.resumed);  // where no certificate is asked for, the ticket resumes
  auto strict = openssl_handshake(*strict_gateway, first.session, options);
  SessionGuard g3{strict.session};
  ASSERT_TRUE(strict.established);
  EXPECT_FALSE(strict.resumed);  // a full handshake, with the certificate
  EXPECT_EQ(strict.identity, "device-42");
}

// offer: the CID the client asks for in the server's records (empty: plain records to it). With
// one, the server's Finished, which comes first in the abbreviated handshake, goes out as a
// tls12_cid record (translated from OpenSSL's plain record); either way the client's Finished does.
class ResumedCid : public ::testing::TestWithParam<Bytes> {};

TEST_P(ResumedCid, AResumedHandshakeNegotiatesANewConnectionId) {
  Clock clock;
  auto server = ticket_server(clock, {secret('c')}, 6);
  ClientSettings cs;
  cs.psk_identity = "demo-device";
  cs.psk_key = "demo-secret";
  cs.connection_id = GetParam();
  cs.session_tickets = true;
  std::string error;
  auto client = ClientContext::create(std::move(cs), &error);
  ASSERT_TRUE(client) << error;

  EnginePair first{*server, *client, nullptr, nullptr, {}};
  first.connect();
  ASSERT_FALSE(first.client->resumption().empty());
  EXPECT_FALSE(first.server->resumed());
  const Bytes first_cid(first.server->connection_id().begin(), first.server->connection_id().end());
  ASSERT_EQ(first_cid.size(), 6u);

  // The session is gone on the server (first.server is simply dropped); the device resumes.
  EnginePair second{*server, *client, nullptr, nullptr, {}};
  second.connect(first.client->resumption());
  EXPECT_TRUE(second.server->resumed());
  EXPECT_TRUE(second.client->resumed());
  const Bytes second_cid(second.server->connection_id().begin(), second.server->connection_id().end());
  ASSERT_EQ(second_cid.size(), 6u);
  EXPECT_NE(second_cid, first_cid);
  EXPECT_EQ(Bytes(second.client->peer_connection_id().begin(), second.client->peer_connection_id().end()),
            second_cid);
  EXPECT_EQ(Bytes(second.server->peer_connection_id().begin(), second.server->peer_connection_id().end()),
            GetParam());
  second.request("GET /after-resume");
  EXPECT_EQ(second.at_server, std::vector<std::string>{"GET /after-resume"});
  EXPECT_TRUE(second.server->lean());
}

INSTANTIATE_TEST_SUITE_P(Tickets, ResumedCid,
                         ::testing::Values(Bytes{}, Bytes{std::byte{0xc1}, std::byte{0xc2}, std::byte{0xc3}}));

}  // namespace
}  // namespace coapgw::dtls
