// The device registry on the real DTLS transport (no socket, fake HTTP client): a handshake whose
// identity only the registry knows waits for the answer and completes when it comes; a banned
// device's handshake is refused; a ban that arrives with a refreshed answer closes the live session.
#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "dtls/client_context.hpp"
#include "dtls/engine.hpp"
#include "dtls/output.hpp"
#include "dtls/server_context.hpp"
#include "metrics/metrics.hpp"
#include "net/udp_socket.hpp"
#include "server/dtls_transport.hpp"
#include "upstream/forward.hpp"
#include "registry_fakes.hpp"

namespace coapgw::server {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::byte>;
using time_point = session::TimePoint;

const time_point t0 = time_point{} + 1000s;
const Address device_addr = *Address::parse("192.0.2.30:40000");
const Address gateway_addr = *Address::parse("192.0.2.1:5684");
const session::Key device_key{device_addr, 5684, session::Proto::dtls, 0};

using test::Client;
using test::Host;
using test::json_answer;
using test::NoWorker;

class RegistryTransportTest : public ::testing::Test {
 protected:
  RegistryTransportTest() : table_(&worker_, budget_, session::Table::Settings{}), transport_({}, host_, table_, metrics_) {
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
    lookup_ = lookup.get();
    transport_.set_psk_lookup(std::move(lookup));
  }

  void from_device(std::span<const std::byte> datagram) {
    net::ReceivedDatagram d;
    d.peer = device_addr;
    d.local = gateway_addr;
    d.data = datagram;
    transport_.on_datagram({0, 5684, false}, d, now_);
  }

  // Exchanges flights until nothing moves; the gateway's datagrams go to the device's engine.
  void exchange(dtls::Engine& device, std::vector<Bytes> pending) {
    std::size_t read = host_.to_device.size();
    for (int round = 0; round < 10; ++round) {
      for (auto& d : pending) from_device(d);
      pending.clear();
      for (; read < host_.to_device.size(); ++read) {
        dtls::Output out;
        device.on_datagram(host_.to_device[read], out, now_);
        for (auto& d : out.datagrams) pending.push_back(d);
      }
      if (pending.empty()) return;
    }
  }

  std::unique_ptr<dtls::Engine> start(const std::string& identity, const std::string& key) {
    dtls::ClientSettings c;
    c.psk_identity = identity;
    c.psk_key = key;
    std::string error;
    contexts_.push_back(dtls::ClientContext::create(std::move(c), &error));
    EXPECT_TRUE(contexts_.back()) << error;
    dtls::Output out;
    auto engine = contexts_.back()->connect(gateway_addr, out, now_);
    std::vector<Bytes> first(out.datagrams.begin(), out.datagrams.end());
    exchange(*engine, std::move(first));
    return engine;
  }

  // Answers the oldest registry request and lets the device read what the gateway sent then.
  void answer(dtls::Engine& device, const upstream::ForwardResponse& response) {
    ASSERT_FALSE(calls_.empty());
    auto done = std::move(calls_.front().second);
    calls_.pop_front();
    const std::size_t before = host_.to_device.size();
    done(response);
    std::vector<Bytes> replies;
    for (std::size_t i = before; i < host_.to_device.size(); ++i) {
      dtls::Output out;
      device.on_datagram(host_.to_device[i], out, now_);
      for (auto& d : out.datagrams) replies.push_back(d);
    }
    exchange(device, std::move(replies));
  }

  double lookups(metrics::PskLookupResult r) { return metrics_.psk_lookups(r).Value(); }

  // `count` other identities, each answered with `body`, fill the registry cache (100 entries).
  void fill_cache(int count, const std::string& prefix, const std::string& body, std::uint8_t code) {
    for (int i = 0; i < count; ++i) {
      lookup_->need_key(prefix + std::to_string(i),
                        [] {
                          PskLookup::Held h;  // no such handshake: the answer finds nothing to feed
                          h.key = session::Key{*Address::parse("192.0.2.99:1"), 5684, session::Proto::dtls, 0};
                          return h;
                        },
                        now_);
      ASSERT_EQ(calls_.size(), 1u);
      auto done = std::move(calls_.front().second);
      calls_.pop_front();
      auto response = json_answer(body);
      response.code = code;
      done(response);
    }
  }

  // Ticks each second up to cache_ttl (10 s) after `from`, answering every registry request with a
  // ban; true when the device's session closed by then.
  bool closed_by_ban_within_ttl(time_point from) {
    for (now_ = from; now_ <= from + 10s; now_ += 1s) {
      transport_.on_tick(now_);
      while (!calls_.empty()) {
        auto done = std::move(calls_.front().second);
        calls_.pop_front();
        done(json_answer(R"({"key":"reg-secret","banned":true})"));
      }
      auto* s = table_.find(device_key);
      if (s == nullptr || s->closed()) return true;
    }
    return false;
  }

  time_point now_ = t0;
  NoWorker worker_;
  session::Budget budget_{100};
  metrics::Metrics metrics_{"test"};
  Host host_;
  session::Table table_;
  DtlsTransport transport_;
  std::vector<std::unique_ptr<dtls::ClientContext>> contexts_;
  std::deque<std::pair<upstream::ForwardRequest, upstream::ForwardDone>> calls_;
  PskLookup* lookup_ = nullptr;  // owned by transport_
};

TEST_F(RegistryTransportTest, HandshakeWaitsForTheRegistryAndCompletesWithItsKey) {
  auto device = start("reg-1", "reg-secret");
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_.front().first.path, "/psk/reg-1");
  EXPECT_NE(device->state(), dtls::Engine::State::established);  // held, not refused
  answer(*device, json_answer(R"({"key":"reg-secret","tenant":"acme"})"));
  ASSERT_EQ(device->state(), dtls::Engine::State::established);
  auto* s = table_.find(device_key);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->state(), session::State::established);
  EXPECT_EQ(lookups(metrics::PskLookupResult::miss), 1);
  dtls::Output out;
  device->send(std::as_bytes(std::span(std::string_view("hello"))), out);
  for (auto& d : out.datagrams) from_device(d);
  EXPECT_EQ(host_.delivered, std::vector<std::string>{"hello"});
}

TEST_F(RegistryTransportTest, LocalKeysNeedNoLookup) {
  auto device = start("local-1", "local-secret");
  EXPECT_EQ(device->state(), dtls::Engine::State::established);
  EXPECT_TRUE(calls_.empty());
}

TEST_F(RegistryTransportTest, BannedDeviceIsRefused) {
  auto device = start("stolen", "stolen-secret");
  answer(*device, json_answer(R"({"key":"stolen-secret","banned":true})"));
  EXPECT_NE(device->state(), dtls::Engine::State::established);
  auto* s = table_.find(device_key);
  EXPECT_TRUE(s == nullptr || s->state() != session::State::established);
}

TEST_F(RegistryTransportTest, BanInARefreshedAnswerClosesTheLiveSession) {
  auto device = start("reg-1", "reg-secret");
  answer(*device, json_answer(R"({"key":"reg-secret"})"));
  ASSERT_EQ(device->state(), dtls::Engine::State::established);
  now_ = t0 + 11s;  // past cache_ttl: the entry of a live session is asked again
  transport_.on_tick(now_);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_NE(table_.find(device_key), nullptr);  // no answer yet: the session stands
  const std::size_t before = host_.to_device.size();
  calls_.front().second(json_answer(R"({"key":"reg-secret","banned":true})"));
  calls_.pop_front();
  auto* s = table_.find(device_key);
  EXPECT_TRUE(s == nullptr || s->closed());
  // The device was told (close_notify).
  bool closed = false;
  for (std::size_t i = before; i < host_.to_device.size(); ++i) {
    dtls::Output out;
    device->on_datagram(host_.to_device[i], out, now_);
    closed = closed || out.closed;
  }
  EXPECT_TRUE(closed);
}

TEST_F(RegistryTransportTest, AFloodOfUnknownIdentitiesDoesNotHideABanFromALiveSession) {
  auto device = start("reg-1", "reg-secret");
  answer(*device, json_answer(R"({"key":"reg-secret"})"));
  ASSERT_EQ(device->state(), dtls::Engine::State::established);
  now_ = t0 + 1s;
  fill_cache(300, "ghost-", "", upstream::coap_code(4, 4));  // 3x the cache's 100 entries
  EXPECT_EQ(lookups(metrics::PskLookupResult::unknown), 300);
  EXPECT_NE(lookup_->cache().find("reg-1"), nullptr);  // the negative answers pushed out each other
  EXPECT_TRUE(closed_by_ban_within_ttl(now_));
}

TEST_F(RegistryTransportTest, ABanReachesALiveSessionWhoseEntryAFullCachePushedOut) {
  auto device = start("reg-1", "reg-secret");
  answer(*device, json_answer(R"({"key":"reg-secret"})"));
  ASSERT_EQ(device->state(), dtls::Engine::State::established);
  now_ = t0 + 1s;
  fill_cache(150, "fleet-", R"({"key":"other"})", upstream::coap_code(2, 5));  // a fleet bigger than the cache
  EXPECT_EQ(lookups(metrics::PskLookupResult::miss), 151);
  EXPECT_TRUE(closed_by_ban_within_ttl(now_));
}

}  // namespace
}  // namespace coapgw::server
