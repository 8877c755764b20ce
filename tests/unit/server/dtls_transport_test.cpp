// server::DtlsTransport through its Host seam, with no socket: a device (dtls::Engine in the client
// role) handshakes with the transport, datagrams are passed by hand, time is passed in. Covers the
// seam itself (whole messages up through deliver(), sealed datagrams out through send_datagram())
// and the ClientHello policy for live sessions (live_hello.hpp) on the real transport.
#include <gtest/gtest.h>

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
const Address device_addr = *Address::parse("192.0.2.20:40000");
const Address gateway_addr = *Address::parse("192.0.2.1:5684");
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

struct FakeHost : DtlsTransport::Host {
  DtlsTransport* transport = nullptr;
  std::vector<Bytes> to_device;
  std::vector<std::string> delivered;
  std::map<metrics::BadReason, std::uint64_t> bad;
  int pings = 0;

  void deliver(session::Session&, std::span<const std::byte> message, time_point) override {
    delivered.push_back(text(message));
  }
  void send_datagram(std::uint8_t, const Address& peer, const Address&, std::span<const std::byte> d) override {
    EXPECT_EQ(peer, device_addr);
    to_device.emplace_back(d.begin(), d.end());
  }
  void ping(session::Session& s) override {
    ++pings;
    transport->send(s, bytes("PING"));  // the worker sends an empty CON; any message shows the path
  }
  void count_bad(metrics::BadReason reason, std::uint64_t n) override { bad[reason] += n; }
  bool draining() const override { return false; }
  bool hand_to_worker(int, std::uint8_t, const net::ReceivedDatagram&) override { return false; }
};

class DtlsTransportTest : public ::testing::Test {
 protected:
  DtlsTransportTest()
      : table_(&worker_, budget_, session::Table::Settings{}),
        transport_(DtlsTransport::Settings{}, host_, table_, metrics_) {
    host_.transport = &transport_;
    auto store = std::make_shared<dtls::PskStore>();
    store->add("device-1", "secret-1");
    dtls::ServerSettings s;
    s.psk = store;
    std::string error;
    auto server = dtls::ServerContext::create(s, &error);
    EXPECT_TRUE(server) << error;
    transport_.set_context(std::move(server));
  }

  std::unique_ptr<dtls::ClientContext> client_context() {
    dtls::ClientSettings c;
    c.psk_identity = "device-1";
    c.psk_key = "secret-1";
    std::string error;
    auto ctx = dtls::ClientContext::create(std::move(c), &error);
    EXPECT_TRUE(ctx) << error;
    return ctx;
  }

  // A datagram from the device's address to the transport; returns how many went back.
  std::size_t from_device(std::span<const std::byte> datagram, time_point now) {
    const auto before = host_.to_device.size();
    net::ReceivedDatagram d;
    d.peer = device_addr;
    d.local = gateway_addr;
    d.data = datagram;
    transport_.on_datagram(arrival, d, now);
    return host_.to_device.size() - before;
  }

  // Runs the handshake of `engine` to completion at `now`.
  void handshake(dtls::Engine& engine, dtls::Output& first, time_point now) {
    std::vector<Bytes> pending;
    for (auto& d : first.datagrams) pending.push_back(d);
    for (int round = 0; round < 10 && engine.state() != dtls::Engine::State::established; ++round) {
      std::size_t sent_from = host_.to_device.size();
      for (auto& d : pending) from_device(d, now);
      pending.clear();
      for (std::size_t i = sent_from; i < host_.to_device.size(); ++i) {
        dtls::Output out;
        engine.on_datagram(host_.to_device[i], out, now);
        for (auto& d : out.datagrams) pending.push_back(d);
      }
    }
    for (auto& d : pending) from_device(d, now);  // the client's last flight
    ASSERT_EQ(engine.state(), dtls::Engine::State::established);
  }

  // A fresh ClientHello, as a forger (or the rebooted device) sends it from the device's address.
  Bytes client_hello(time_point now) {
    auto ctx = client_context();
    dtls::Output out;
    auto engine = ctx->connect(gateway_addr, out, now);
    EXPECT_TRUE(engine);
    EXPECT_FALSE(out.datagrams.empty());
    return out.datagrams.front();
  }

  // What the device's engine opens from the datagrams the transport sent since `from`.
  std::vector<std::string> device_reads(dtls::Engine& engine, std::size_t from, time_point now) {
    std::vector<std::string> got;
    for (std::size_t i = from; i < host_.to_device.size(); ++i) {
      dtls::Output out;
      engine.on_datagram(host_.to_device[i], out, now);
      for (auto& p : out.plaintexts) got.push_back(text(p));
    }
    return got;
  }

  std::uint64_t dropped_hellos() { return host_.bad[metrics::BadReason::hello_for_live_session]; }

  NoWorker worker_;
  session::Budget budget_{100};
  metrics::Metrics metrics_{"test"};
  FakeHost host_;
  session::Table table_;
  DtlsTransport transport_;
  std::unique_ptr<dtls::ClientContext> device_ctx_ = client_context();
  std::unique_ptr<dtls::Engine> device_;

  void connect_device() {
    dtls::Output out;
    device_ = device_ctx_->connect(gateway_addr, out, t0);
    ASSERT_TRUE(device_);
    handshake(*device_, out, t0);
    ASSERT_NE(table_.find({device_addr, 5684, session::Proto::dtls, 0}), nullptr);
  }

  void device_sends(std::string_view message, time_point now) {
    dtls::Output out;
    device_->send(bytes(message), out);
    for (auto& d : out.datagrams) from_device(d, now);
  }
};

TEST_F(DtlsTransportTest, MessagesGoUpThroughDeliverAndAnswersComeBackSealed) {
  connect_device();
  device_sends("request-1", t0 + 10ms);
  ASSERT_EQ(host_.delivered, std::vector<std::string>{"request-1"});
  auto* s = table_.find({device_addr, 5684, session::Proto::dtls, 0});
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->state(), session::State::established);
  const auto from = host_.to_device.size();
  EXPECT_FALSE(transport_.send(*s, bytes("answer-1")));
  EXPECT_EQ(device_reads(*device_, from, t0 + 20ms), std::vector<std::string>{"answer-1"});
}

TEST_F(DtlsTransportTest, ForgedHelloWhileTheDeviceTalksIsDroppedWithoutAnAnswer) {
  connect_device();
  device_sends("request-1", t0 + 1s);
  EXPECT_EQ(from_device(client_hello(t0 + 2s), t0 + 2s), 0u);
  EXPECT_EQ(dropped_hellos(), 1u);
  EXPECT_EQ(host_.pings, 0);
  device_sends("request-2", t0 + 2500ms);  // the session goes on
  EXPECT_EQ(host_.delivered.back(), "request-2");
}

TEST_F(DtlsTransportTest, QuietDeviceIsPingedAndAnAnswerKeepsForgedHellosOut) {
  connect_device();
  const auto from = host_.to_device.size();
  const time_point probe = t0 + 10s;
  from_device(client_hello(probe), probe);
  EXPECT_EQ(host_.pings, 1);
  EXPECT_EQ(device_reads(*device_, from, probe), std::vector<std::string>{"PING"});  // through the session
  device_sends("PONG", probe + 100ms);  // an authenticated answer
  EXPECT_EQ(host_.delivered.back(), "PONG");
  for (auto at : {probe + 3s, probe + 6s, probe + 9s}) {  // well past the 2 s a rebooted device waits
    EXPECT_EQ(from_device(client_hello(at), at), 0u) << "no HelloVerifyRequest while the device answers";
  }
  EXPECT_EQ(host_.pings, 1);
  EXPECT_EQ(dropped_hellos(), 4u);
  // 10 s after the answered ping, the device is asked again (a reboot since cannot stay locked out).
  EXPECT_EQ(from_device(client_hello(probe + 10s), probe + 10s), 1u);  // the ping, no HelloVerifyRequest
  EXPECT_EQ(host_.pings, 2);
}

TEST_F(DtlsTransportTest, RebootedDeviceThatCannotAnswerThePingHandshakesAgain) {
  connect_device();
  const time_point probe = t0 + 10s;
  from_device(client_hello(probe), probe);
  EXPECT_EQ(host_.pings, 1);
  EXPECT_EQ(from_device(client_hello(probe + 1s), probe + 1s), 0u);  // still waiting for an answer
  // No answer within 2 s: the ClientHello gets the cookie exchange (a HelloVerifyRequest).
  EXPECT_EQ(from_device(client_hello(probe + 2s), probe + 2s), 1u);
  EXPECT_EQ(dropped_hellos(), 2u);
  // The rebooted device completes a new handshake, which replaces the old session.
  auto* old = table_.find({device_addr, 5684, session::Proto::dtls, 0});
  ASSERT_NE(old, nullptr);
  const auto old_id = old->id();
  dtls::Output out;
  auto rebooted = device_ctx_->connect(gateway_addr, out, probe + 3s);
  ASSERT_TRUE(rebooted);
  handshake(*rebooted, out, probe + 3s);
  auto* now = table_.find({device_addr, 5684, session::Proto::dtls, 0});
  ASSERT_NE(now, nullptr);
  EXPECT_NE(now->id(), old_id);
}

// RFC 9146: after a session moved to the device's new address, the kernel keeps hashing that
// address's records to another worker's socket, which hands them to the owner (on_handed_datagram):
// there they are the session's own address and must take the ordinary path, not be dropped.
TEST_F(DtlsTransportTest, RecordsHandedFromAnotherWorkerAtTheSessionsAddressAreDelivered) {
  auto store = std::make_shared<dtls::PskStore>();
  store->add("device-1", "secret-1");
  dtls::ServerSettings s;
  s.psk = store;
  s.connection_id = {6, 0};
  std::string error;
  auto server = dtls::ServerContext::create(s, &error);
  ASSERT_TRUE(server) << error;
  transport_.set_context(std::move(server));
  dtls::ClientSettings c;
  c.psk_identity = "device-1";
  c.psk_key = "secret-1";
  c.connection_id = Bytes{};
  auto ctx = dtls::ClientContext::create(std::move(c), &error);
  ASSERT_TRUE(ctx) << error;
  dtls::Output first;
  auto device = ctx->connect(gateway_addr, first, t0);
  ASSERT_TRUE(device);
  handshake(*device, first, t0);
  ASSERT_FALSE(device->peer_connection_id().empty());
  dtls::Output out;
  ASSERT_TRUE(device->send(bytes("GET /handed"), out));
  net::ReceivedDatagram d;
  d.peer = device_addr;
  d.local = gateway_addr;
  d.data = out.datagrams.front();
  transport_.on_handed_datagram(arrival, d, t0);
  EXPECT_EQ(host_.delivered, std::vector<std::string>{"GET /handed"});
  EXPECT_EQ(host_.bad[metrics::BadReason::dtls_no_session], 0u);
}

}  // namespace
}  // namespace coapgw::server
