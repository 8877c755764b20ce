// DeviceLinks over a real session table and exchange::Layer with a fake peer: the session becomes a
// client session while a downlink is pending and a server session again after; the device's answer,
// silence of the index and a session closed meanwhile each end the request once.
#include <gtest/gtest.h>

#include "../exchange/fake_peer.hpp"
#include "metrics/metrics.hpp"
#include "server/device_links.hpp"
#include "server/dtls_tls.hpp"

namespace coapgw::server {
namespace {

using namespace std::chrono_literals;
using exchange::test::Fixture;

struct Links {
  Fixture f;
  metrics::Metrics metrics{"test"};
  std::vector<std::function<void()>> posted;
  DeviceLinks links{f.table, f.layer, [this](std::function<void()> fn) { posted.push_back(std::move(fn)); }, [] {},
                    [](const upstream::RouteSpec&) -> std::unique_ptr<upstream::Upstream> { return nullptr; },
                    metrics, [this] { return f.now; }};
  Links() { links.set_plain_endpoints({{0, 5683}}); }

  static api::DeviceRef device(const char* addr) {
    api::DeviceRef d;
    d.kind = api::DeviceRef::Kind::plain;
    d.remote = *Address::parse(addr);
    return d;
  }
  static api::DownlinkRequest get_temp() {
    api::DownlinkRequest r;
    r.method = coap::code::get;
    r.uri_path = {"temp"};
    return r;
  }
  void run_posted() {
    auto now = std::move(posted);
    posted.clear();
    for (auto& fn : now) fn();
  }
};

TEST(DeviceLinks, RequestGoesOverTheDeviceSessionAsAClientSession) {
  Links t;
  std::optional<api::DownlinkResult> got;
  t.links.send(Links::device("192.0.2.1:5683"), Links::get_temp(), 5s, [&](api::DownlinkResult r) { got = r; });
  ASSERT_EQ(t.f.peer.sent.size(), 1u);
  const coap::Message req = t.f.peer.sent[0];
  EXPECT_EQ(req.type, coap::Type::con);
  EXPECT_EQ(req.code, coap::code::get);
  ASSERT_NE(req.find(coap::option::uri_path), nullptr);
  EXPECT_EQ(t.f.s->type(), session::Type::client);
  EXPECT_EQ(t.links.pending_on(*t.f.s), 1u);
  EXPECT_FALSE(got);

  exchange::test::deliver(t.f.layer, *t.f.s,
                          exchange::test::message(coap::Type::ack, coap::code::content, req.message_id, req.token, "21.5"),
                          t.f.now);
  t.run_posted();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, api::DownlinkStatus::answered);
  EXPECT_EQ(got->answer.code, coap::code::content);
  EXPECT_EQ(got->answer.payload, "21.5");
  EXPECT_EQ(t.f.s->type(), session::Type::server);
  EXPECT_EQ(t.f.s->refcount(), 0);
  EXPECT_TRUE(t.f.s->idle());
  EXPECT_EQ(t.links.pending(), 0u);
}

TEST(DeviceLinks, UnknownDeviceHasNoSession) {
  Links t;
  std::optional<api::DownlinkResult> got;
  t.links.send(Links::device("192.0.2.9:5683"), Links::get_temp(), 5s, [&](api::DownlinkResult r) { got = r; });
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, api::DownlinkStatus::no_session);
  EXPECT_TRUE(t.f.peer.sent.empty());
  api::DeviceRef nobody;
  nobody.identity = "nobody";
  EXPECT_EQ(t.links.find(nobody), nullptr);
}

// A fleet whose devices share one PSK identity (a million bench devices, or a group key): each
// session is indexed and dropped in O(1) (DeviceData::link_slot), in any order, and the downlink
// still finds the most recently heard one.
TEST(DeviceLinks, ManySessionsOfOneIdentityAreIndexedAndDroppedInAnyOrder) {
  struct Device : DeviceData {
    std::string_view identity() const override { return "shared"; }
  };
  Fixture f;
  metrics::Metrics metrics{"test"};
  session::Budget budget{300};
  session::Table table(nullptr, budget, session::Table::Settings{});
  DeviceLinks links{table, f.layer, [](std::function<void()>) {}, [] {},
                    [](const upstream::RouteSpec&) -> std::unique_ptr<upstream::Upstream> { return nullptr; },
                    metrics, [&] { return f.now; }};
  const auto local = *Address::parse("127.0.0.1:5684");
  std::vector<Device> data(100);
  std::vector<session::Session*> sessions;
  for (int i = 0; i < 100; ++i) {
    session::Key key{*Address::parse("192.0.2.7:" + std::to_string(10000 + i)), 5684, session::Proto::dtls, 0};
    auto* s = table.create_server(key, local, -1, f.now + std::chrono::milliseconds(i), session::State::established);
    ASSERT_NE(s, nullptr);
    s->set_app_data(&data[i]);
    links.identified(*s);
    links.identified(*s);  // again (an address change): still one entry
    sessions.push_back(s);
  }
  api::DeviceRef shared;
  shared.identity = "shared";
  EXPECT_EQ(links.find(shared), sessions[99]);
  auto close = [&](int i) {
    links.closed(*sessions[i]);
    table.close(*sessions[i], session::CloseReason::shutdown);
    sessions[i] = nullptr;
  };
  for (int i = 0; i < 100; i += 3) close(i);
  close(98);
  EXPECT_EQ(links.find(shared), sessions[97]);
  // The newest moves (RFC 9146): found under its new address.
  ASSERT_TRUE(table.move_remote(*sessions[97], *Address::parse("192.0.2.8:4000")));
  links.identified(*sessions[97]);
  EXPECT_EQ(links.find(shared), sessions[97]);
  // The rest, newest first: each time the newest left is found, so every moved slot was fixed up.
  for (int i = 97; i >= 0; --i) {
    if (sessions[i] == nullptr) continue;
    EXPECT_EQ(links.find(shared), sessions[i]) << i;
    close(i);
  }
  EXPECT_EQ(links.find(shared), nullptr);
}

TEST(DeviceLinks, SessionClosedWhilePendingEndsTheRequestAndFreesTheSession) {
  Links t;
  std::optional<api::DownlinkResult> got;
  int calls = 0;
  t.links.send(Links::device("192.0.2.1:5683"), Links::get_temp(), 5s, [&](api::DownlinkResult r) {
    got = r;
    ++calls;
  });
  auto key = t.f.s->key();
  t.f.table.close(*t.f.s, session::CloseReason::disconnected);  // the worker's close event:
  t.f.layer.drop_session(*t.f.s);                                // its exchanges fail
  t.run_posted();
  ASSERT_TRUE(got);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(got->status, api::DownlinkStatus::no_session);
  EXPECT_EQ(t.f.table.find(key), nullptr);
  EXPECT_EQ(t.f.table.detached_count(), 0u);  // freed once the Call-Home reference went
}

TEST(DeviceLinks, DeadlineRunsOnTheInjectedClock) {
  Links t;
  std::optional<api::DownlinkResult> got;
  t.links.send(Links::device("192.0.2.1:5683"), Links::get_temp(), 5s, [&](api::DownlinkResult r) { got = r; });
  ASSERT_EQ(t.f.peer.sent.size(), 1u);
  t.f.advance(4s);  // retransmissions, no deadline yet
  t.run_posted();
  EXPECT_FALSE(got);
  t.f.advance(2s);  // past the 5 s the request was given, by the fake clock
  t.run_posted();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, api::DownlinkStatus::timeout);
  EXPECT_EQ(t.f.s->type(), session::Type::server);
}

}  // namespace
}  // namespace coapgw::server
