// server::DtlsTransport behind a balancer (issue 18): nginx reuses the source ports of its
// upstream sockets, so the address a session was last heard from can become another device's.
// A session with a Connection ID that loses its address that way is parked (kept, found by its
// CID), not closed; a session without a CID is closed as before. Devices are dtls::Engine clients,
// datagrams are passed by hand, time is passed in.
#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "dtls/client_context.hpp"
#include "dtls/engine.hpp"
#include "dtls/output.hpp"
#include "dtls/server_context.hpp"
#include "metrics/metrics.hpp"
#include "net/udp_socket.hpp"
#include "server/dtls_transport.hpp"

namespace coapgw::server {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::byte>;
using time_point = session::TimePoint;

const time_point t0 = time_point{} + 1000s;
const Address gateway_addr = *Address::parse("192.0.2.1:5684");
const Address port_a = *Address::parse("192.0.2.9:40001");  // nginx's upstream ports, as the gateway sees them
const Address port_b = *Address::parse("192.0.2.9:40002");
const Address port_c = *Address::parse("192.0.2.9:40003");
const DtlsTransport::Arrival arrival{0, 5684, false};

Bytes bytes(std::string_view s) {
  Bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}
std::string text(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

struct NoWorker : session::Context {
  int worker_index() const override { return 0; }
};

struct Host : DtlsTransport::Host {
  std::map<std::string, std::vector<Bytes>> sent;  // by destination ("ip:port")
  std::vector<std::string> delivered;
  std::map<metrics::BadReason, std::uint64_t> bad;
  void deliver(session::Session&, std::span<const std::byte> message, time_point) override {
    delivered.push_back(text(message));
  }
  void send_datagram(std::uint8_t, const Address& peer, const Address&, std::span<const std::byte> d) override {
    sent[peer.to_string()].emplace_back(d.begin(), d.end());
  }
  void ping(session::Session&) override {}
  void count_bad(metrics::BadReason reason, std::uint64_t n) override { bad[reason] += n; }
  bool draining() const override { return false; }
  bool hand_to_worker(int, std::uint8_t, const net::ReceivedDatagram&) override { return false; }
};

class CidParkTest : public ::testing::Test {
 protected:
  CidParkTest()
      : table_(&worker_, budget_, session::Table::Settings{}),
        transport_(DtlsTransport::Settings{}, host_, table_, metrics_) {
    auto store = std::make_shared<dtls::PskStore>();
    store->add("device-1", "secret-1");
    dtls::ServerSettings s;
    s.psk = store;
    s.connection_id = {6, 0};
    std::string error;
    auto server = dtls::ServerContext::create(s, &error);
    EXPECT_TRUE(server) << error;
    transport_.set_context(std::move(server));
  }

  std::unique_ptr<dtls::ClientContext> client_context(bool cid) {
    dtls::ClientSettings c;
    c.psk_identity = "device-1";
    c.psk_key = "secret-1";
    if (cid) c.connection_id = Bytes{};
    std::string error;
    auto ctx = dtls::ClientContext::create(std::move(c), &error);
    EXPECT_TRUE(ctx) << error;
    return ctx;
  }

  void from(const Address& peer, std::span<const std::byte> datagram, time_point now) {
    net::ReceivedDatagram d;
    d.peer = peer;
    d.local = gateway_addr;
    d.data = datagram;
    transport_.on_datagram(arrival, d, now);
  }

  // A device that handshakes from `peer`; its engine stays in `contexts_` / the returned pointer.
  dtls::Engine* connect(const Address& peer, bool cid, time_point now, bool expect_established = true) {
    contexts_.push_back(client_context(cid));
    dtls::Output out;
    engines_.push_back(contexts_.back()->connect(gateway_addr, out, now));
    dtls::Engine& engine = *engines_.back();
    std::vector<Bytes> pending(out.datagrams.begin(), out.datagrams.end());
    for (int round = 0; round < 10 && engine.state() != dtls::Engine::State::established; ++round) {
      host_.sent[peer.to_string()].clear();
      for (auto& d : pending) from(peer, d, now);
      pending.clear();
      for (auto& d : host_.sent[peer.to_string()]) {
        dtls::Output reply;
        engine.on_datagram(d, reply, now);
        pending.insert(pending.end(), reply.datagrams.begin(), reply.datagrams.end());
      }
    }
    for (auto& d : pending) from(peer, d, now);
    if (!expect_established) return &engine;
    EXPECT_EQ(engine.state(), dtls::Engine::State::established);
    EXPECT_EQ(engine.peer_connection_id().empty(), !cid);
    return &engine;
  }

  void send(dtls::Engine& device, const Address& peer, std::string_view message, time_point now) {
    dtls::Output out;
    ASSERT_TRUE(device.send(bytes(message), out));
    for (auto& d : out.datagrams) from(peer, d, now);
  }

  session::Session* at(const Address& peer) { return table_.find({peer, 5684, session::Proto::dtls, 0}); }

  NoWorker worker_;
  session::Budget budget_{100};
  metrics::Metrics metrics_{"test"};
  Host host_;
  session::Table table_;
  DtlsTransport transport_;
  std::vector<std::unique_ptr<dtls::ClientContext>> contexts_;
  std::vector<std::unique_ptr<dtls::Engine>> engines_;
};

TEST_F(CidParkTest, SessionWhoseAddressAnotherDeviceTookIsParkedAndFoundAgainByItsCid) {
  auto* a = connect(port_a, true, t0);
  auto* b = connect(port_b, true, t0);
  const auto a_id = at(port_a)->id();
  const auto b_id = at(port_b)->id();
  // nginx forgot device A's mapping and gave port_a to device B's new 4-tuple.
  send(*b, port_a, "from B", t0 + 1s);
  ASSERT_NE(at(port_a), nullptr);
  EXPECT_EQ(at(port_a)->id(), b_id);
  EXPECT_EQ(table_.size(), 2u) << "A's session must stay";
  EXPECT_EQ(metrics_.dtls_sessions_parked().Value(), 1.0);
  EXPECT_EQ(table_.stats().closed[static_cast<int>(session::Proto::dtls)][static_cast<int>(session::CloseReason::disconnected)], 0u);
  // A comes back through yet another port: found by its CID, moved there, answered there.
  send(*a, port_c, "from A", t0 + 2s);
  EXPECT_EQ(host_.delivered, (std::vector<std::string>{"from B", "from A"}));
  ASSERT_NE(at(port_c), nullptr);
  EXPECT_EQ(at(port_c)->id(), a_id);
  EXPECT_FALSE(transport_.send(*at(port_c), bytes("answer A")));
  dtls::Output opened;
  a->on_datagram(host_.sent[port_c.to_string()].back(), opened, t0 + 2s);
  ASSERT_EQ(opened.plaintexts.size(), 1u);
  EXPECT_EQ(text(opened.plaintexts[0]), "answer A");
  EXPECT_EQ(host_.bad[metrics::BadReason::dtls_no_session], 0u);
}

TEST_F(CidParkTest, ParkedSessionHasAnAddressNoDatagramComesFrom) {
  connect(port_a, true, t0);
  auto* b = connect(port_b, true, t0);
  const auto a_id = at(port_a)->id();
  send(*b, port_a, "from B", t0 + 1s);
  const session::Session* parked = nullptr;
  table_.for_each([&](const session::Session& s) {
    if (s.id() == a_id) parked = &s;
  });
  ASSERT_NE(parked, nullptr);
  EXPECT_TRUE(parked->addr_remote().is_v6());
  EXPECT_EQ(parked->addr_remote().to_string().rfind("[100::", 0), 0u) << parked->addr_remote().to_string();
}

// A new device's handshake from the address of a quiet CID session (nginx gave it that session's
// old port): the ping goes unanswered, the handshake completes, and the old session is parked
// rather than replaced, so its device goes on with its CID from wherever it comes back.
TEST_F(CidParkTest, HandshakeOfAnotherDeviceAtTheAddressParksTheQuietCidSession) {
  auto* a = connect(port_a, true, t0);
  const auto a_id = at(port_a)->id();
  auto hello_ctx = client_context(true);
  dtls::Output hello;
  auto first_try = hello_ctx->connect(gateway_addr, hello, t0 + 10s);
  from(port_a, hello.datagrams.front(), t0 + 10s);  // the session is pinged, the hello dropped
  ASSERT_EQ(table_.size(), 1u);
  connect(port_a, true, t0 + 13s);  // no authenticated answer within 2 s: the handshake goes ahead
  ASSERT_NE(at(port_a), nullptr);
  EXPECT_NE(at(port_a)->id(), a_id);
  EXPECT_EQ(table_.size(), 2u);
  send(*a, port_c, "from A", t0 + 14s);
  ASSERT_NE(at(port_c), nullptr);
  EXPECT_EQ(at(port_c)->id(), a_id);
  EXPECT_EQ(host_.delivered, std::vector<std::string>{"from A"});
}

// The handshake at the quiet session's address completes, but the table has no room for its
// session (every slot held, none idle): nothing took the address, so the CID session keeps it, and
// no park is counted.
TEST_F(CidParkTest, NoParkWhenTheSessionThatWouldTakeTheAddressIsNotCreated) {
  connect(port_a, true, t0);
  session::Session* a = at(port_a);
  ASSERT_NE(a, nullptr);
  const auto a_id = a->id();
  a->reference();  // busy (an exchange in flight): never reclaimed
  while (budget_.try_acquire()) {
  }  // the other workers hold every other slot
  auto hello_ctx = client_context(true);
  dtls::Output hello;
  auto first_try = hello_ctx->connect(gateway_addr, hello, t0 + 10s);
  from(port_a, hello.datagrams.front(), t0 + 10s);  // the session is pinged, the hello dropped
  connect(port_a, true, t0 + 13s, false);
  EXPECT_EQ(metrics_.dtls_sessions_parked().Value(), 0.0);
  ASSERT_NE(at(port_a), nullptr);
  EXPECT_EQ(at(port_a)->id(), a_id);
  EXPECT_EQ(table_.size(), 1u);
  a->release();
}

TEST_F(CidParkTest, SessionWithoutCidWhoseAddressWasTakenIsClosedAsBefore) {
  connect(port_a, false, t0);
  auto* b = connect(port_b, true, t0);
  send(*b, port_a, "from B", t0 + 1s);
  EXPECT_EQ(table_.size(), 1u);
  EXPECT_EQ(metrics_.dtls_sessions_parked().Value(), 0.0);
  EXPECT_EQ(table_.stats().closed[static_cast<int>(session::Proto::dtls)][static_cast<int>(session::CloseReason::disconnected)], 1u);
}

}  // namespace
}  // namespace coapgw::server
