// A session saved at our last stop (sessions.persist) whose key came from the device registry: the
// local keys do not know its identity, so the device's first record after the restart waits for the
// registry's answer, which decides (the same key: restored without a handshake; banned: revoked).
// A registry that does not answer leaves the session standing, as it would a live one, and asks
// again later so that a ban still reaches it. Real DTLS transport, fake HTTP client, time passed in.
#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "dtls/client_context.hpp"
#include "dtls/engine.hpp"
#include "dtls/output.hpp"
#include "dtls/server_context.hpp"
#include "dtls/session_state.hpp"
#include "metrics/metrics.hpp"
#include "net/udp_socket.hpp"
#include "server/dtls_tls.hpp"
#include "server/dtls_transport.hpp"
#include "server/persist.hpp"
#include "upstream/forward.hpp"
#include "registry_fakes.hpp"

namespace coapgw::server {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::byte>;
using time_point = session::TimePoint;

const time_point t0 = time_point{} + 1000s;
const Address device_addr = *Address::parse("192.0.2.31:40000");
const Address gateway_addr = *Address::parse("192.0.2.1:5684");
const session::Key device_key{device_addr, 5684, session::Proto::dtls, 0};

using test::Client;
using test::Host;
using test::NoWorker;

upstream::ForwardResponse registry_says(const std::string& body) { return test::json_answer(body); }

upstream::ForwardResponse registry_timed_out() {
  upstream::ForwardResponse r;
  r.outcome = upstream::Outcome::timeout;
  return r;
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The restarted gateway: empty local keys but for one device, a registry, and the saved session.
class RegistryRestoreTest : public ::testing::Test {
 protected:
  RegistryRestoreTest() : table_(&worker_, budget_, session::Table::Settings{}), transport_({}, host_, table_, metrics_) {
    auto store = std::make_shared<dtls::PskStore>();
    store->add("local-1", "local-secret");
    dtls::ServerSettings s;
    s.psk = store;
    std::string error;
    auto server = dtls::ServerContext::create(s, &error);
    EXPECT_TRUE(server) << error;
    transport_.set_context(std::move(server));
    PskLookup::Settings ls;
    ls.url = "http://127.0.0.1:9/psk/{identity}";
    ls.cache = {10s, 5s, 100};
    ls.clock = [this] { return now_; };
    auto client = std::make_unique<Client>();
    client->calls = &calls_;
    auto lookup = std::make_unique<PskLookup>(
        ls, std::move(client), metrics_, [this](const std::string& identity, std::vector<PskLookup::Held> held) {
          transport_.on_key_answer(identity, std::move(held), now_);
        });
    transport_.set_psk_lookup(std::move(lookup));
    transport_.set_restored_pool(&pool_);
    save_session("reg-1", "reg-secret", true);
  }

  // A device session as the gateway exported it at its last stop: made by a client engine and a
  // server engine of their own (keys from the "registry"), the server side serialized into the pool.
  void save_session(const std::string& identity, const std::string& key, bool registry_keyed,
                    std::optional<std::int64_t> last_seen = std::nullopt) {
    auto store = std::make_shared<dtls::PskStore>();
    store->add(identity, key);
    dtls::ServerSettings ss;
    ss.psk = store;
    std::string error;
    old_server_ = dtls::ServerContext::create(ss, &error);
    ASSERT_TRUE(old_server_) << error;
    dtls::ClientSettings cs;
    cs.psk_identity = identity;
    cs.psk_key = key;
    client_ = dtls::ClientContext::create(std::move(cs), &error);
    ASSERT_TRUE(client_) << error;
    dtls::Output out;
    device_ = client_->connect(gateway_addr, out, now_);
    std::unique_ptr<dtls::Engine> server;
    std::vector<Bytes> to_server(out.datagrams.begin(), out.datagrams.end());
    for (int round = 0; round < 10 && !to_server.empty(); ++round) {
      std::vector<Bytes> to_client;
      for (auto& d : to_server) {
        dtls::Output o;
        if (!server) server = old_server_->on_hello(device_addr, d, o, now_).engine;
        else server->on_datagram(d, o, now_);
        for (auto& x : o.datagrams) to_client.push_back(x);
      }
      to_server.clear();
      for (auto& d : to_client) {
        dtls::Output o;
        device_->on_datagram(d, o, now_);
        for (auto& x : o.datagrams) to_server.push_back(x);
      }
    }
    ASSERT_TRUE(server);
    ASSERT_EQ(device_->state(), dtls::Engine::State::established);
    // The device's first record moves the server to its lean record layer, which is what is saved.
    dtls::Output sent, opened;
    device_->send(std::as_bytes(std::span(std::string_view("before stop"))), sent);
    for (auto& d : sent.datagrams) server->on_datagram(d, opened, now_);
    ASSERT_EQ(opened.plaintexts.size(), 1u);
    auto state = server->export_state();
    ASSERT_TRUE(state);
    state->peer = device_addr;
    state->registry_keyed = registry_keyed;
    pool_.add(device_addr, dtls::serialize(*state), last_seen.value_or(wall_now_));
  }

  void device_says(std::string_view text) {
    dtls::Output out;
    device_->send(std::as_bytes(std::span(text)), out);
    for (auto& d : out.datagrams) {
      net::ReceivedDatagram rd;
      rd.peer = device_addr;
      rd.local = gateway_addr;
      rd.data = d;
      transport_.on_datagram({0, 5684, false}, rd, now_);
    }
  }

  void registry_answers(const upstream::ForwardResponse& response) {
    ASSERT_FALSE(calls_.empty());
    auto done = std::move(calls_.front().second);
    calls_.pop_front();
    done(response);
  }

  bool restored() {
    auto* s = table_.find(device_key);
    return s != nullptr && !s->closed() && s->state() == session::State::established;
  }
  double revoked() { return metrics_.sessions_closed(metrics::Proto::dtls, metrics::CloseReason::revoked).Value(); }

  time_point now_ = t0;
  NoWorker worker_;
  session::Budget budget_{100};
  metrics::Metrics metrics_{"test"};
  Host host_;
  session::Table table_;
  DtlsTransport transport_;
  std::int64_t wall_now_ = wall_ms();  // the pool's wall clock
  persist::RestoredPool pool_{[this] { return wall_now_; }};
  std::deque<std::pair<upstream::ForwardRequest, upstream::ForwardDone>> calls_;
  std::unique_ptr<dtls::ServerContext> old_server_;
  std::unique_ptr<dtls::ClientContext> client_;
  std::unique_ptr<dtls::Engine> device_;
};

TEST_F(RegistryRestoreTest, FirstRecordWaitsForTheRegistryAndTheSessionGoesOnWithoutAHandshake) {
  device_says("after restart");
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_.front().first.path, "/psk/reg-1");
  EXPECT_TRUE(host_.delivered.empty());  // held, not refused
  EXPECT_FALSE(restored());
  device_says("retransmitted");  // held behind the first, one lookup
  EXPECT_EQ(calls_.size(), 1u);
  registry_answers(registry_says(R"({"key":"reg-secret","tenant":"acme"})"));
  EXPECT_TRUE(restored());
  EXPECT_EQ(host_.delivered, (std::vector<std::string>{"after restart", "retransmitted"}));
  EXPECT_EQ(metrics_.sessions_reused(metrics::Proto::dtls).Value(), 1);
  EXPECT_TRUE(pool_.empty());
}

TEST_F(RegistryRestoreTest, ARecordHeldForTheRegistryStartsTheIdleTimeAgain) {
  // The device was quiet for 299 s of the 300 s idle_timeout when we stopped; its first record
  // after the restart authenticates and waits 2 s for the registry. That wait is not the device's
  // silence: the session is restored when the answer comes.
  save_session("reg-1", "reg-secret", true, wall_now_ - 299'000);
  device_says("after restart");
  ASSERT_EQ(calls_.size(), 1u);
  wall_now_ += 2000;
  now_ += 2s;
  registry_answers(registry_says(R"({"key":"reg-secret"})"));
  EXPECT_TRUE(restored());
  EXPECT_EQ(host_.delivered, (std::vector<std::string>{"after restart"}));
}

TEST_F(RegistryRestoreTest, ARecordDroppedWhileItWouldWaitForTheRegistryIsCounted) {
  // The lookup holds at most max_held_per_slot datagrams; the device's records past that are
  // dropped (it sends again), and counted.
  for (std::size_t i = 0; i <= PskLookup::max_held_per_slot; ++i) device_says("record " + std::to_string(i));
  EXPECT_EQ(calls_.size(), 1u);
  EXPECT_EQ(metrics_.psk_lookups(metrics::PskLookupResult::error).Value(), 1);
  EXPECT_FALSE(restored());
  registry_answers(registry_says(R"({"key":"reg-secret"})"));
  EXPECT_TRUE(restored());
  EXPECT_EQ(host_.delivered.size(), PskLookup::max_held_per_slot);
}

TEST_F(RegistryRestoreTest, BannedWhileWeWereDownIsNotRestored) {
  device_says("after restart");
  registry_answers(registry_says(R"({"key":"reg-secret","banned":true})"));
  EXPECT_FALSE(restored());
  EXPECT_TRUE(host_.delivered.empty());
  EXPECT_EQ(revoked(), 1);
}

TEST_F(RegistryRestoreTest, AnotherKeyInTheRegistryIsNotRestored) {
  device_says("after restart");
  registry_answers(registry_says(R"({"key":"new-secret"})"));
  EXPECT_FALSE(restored());
  EXPECT_EQ(revoked(), 1);
}

TEST_F(RegistryRestoreTest, RegistryDownLeavesTheSessionStandingAndALaterBanEndsIt) {
  device_says("after restart");
  registry_answers(registry_timed_out());
  EXPECT_TRUE(restored());
  EXPECT_EQ(host_.delivered, std::vector<std::string>{"after restart"});
  // Asked again after negative_ttl (5 s); the registry is back and has banned the device meanwhile.
  for (int i = 0; i < 10 && calls_.empty(); ++i) {
    now_ += 1s;
    transport_.on_tick(now_);
  }
  ASSERT_EQ(calls_.size(), 1u);
  registry_answers(registry_says(R"({"key":"reg-secret","banned":true})"));
  EXPECT_FALSE(restored());
  EXPECT_EQ(table_.stats().closed[static_cast<int>(session::Proto::dtls)][static_cast<int>(session::CloseReason::revoked)],
            1u);
}

TEST_F(RegistryRestoreTest, ALocalKeyRemovedBeforeTheRestartIsNotRestoredWhileTheRegistryIsDown) {
  // Saved with a key from the local keys, which the operator removed before the restart: a
  // registry that does not answer must not let it stand (a reload would have revoked it).
  save_session("was-local", "local-secret-2", false);
  device_says("after restart");
  ASSERT_EQ(calls_.size(), 1u);
  registry_answers(registry_timed_out());
  EXPECT_FALSE(restored());
  EXPECT_TRUE(host_.delivered.empty());
  EXPECT_EQ(revoked(), 1);
}

TEST_F(RegistryRestoreTest, ARecordWithoutTheSessionKeysCostsNoLookup) {
  // Someone at the device's address without its keys: the record must authenticate under the saved
  // keys before the registry is asked, so spoofed records cannot make the gateway query it.
  std::vector<std::byte> forged(40, std::byte{0x55});
  forged[0] = std::byte{23};  // application_data, DTLS 1.2, epoch 1
  forged[1] = std::byte{0xfe};
  forged[2] = std::byte{0xfd};
  forged[4] = std::byte{1};
  forged[11] = std::byte{0};
  forged[12] = std::byte{27};
  net::ReceivedDatagram rd;
  rd.peer = device_addr;
  rd.local = gateway_addr;
  rd.data = forged;
  transport_.on_datagram({0, 5684, false}, rd, now_);
  EXPECT_TRUE(calls_.empty());
  EXPECT_FALSE(restored());
  EXPECT_FALSE(pool_.empty());  // still waiting for the real device
  device_says("the real one");
  EXPECT_EQ(calls_.size(), 1u);
}

}  // namespace
}  // namespace coapgw::server
