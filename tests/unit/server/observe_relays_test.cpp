// ObserveRelays with a fake send and clock: a registration gets a hook, the upstream's first answer
// with Observe makes it a relay, notifications go to the device as NONs with its token in order,
// and RST, deregistration, the session's end, the upstream's end and the bound each end it.
#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include "../exchange/fake_peer.hpp"
#include "metrics/metrics.hpp"
#include "server/observe_relays.hpp"

namespace coapgw::server {
namespace {

using exchange::test::Fixture;

std::vector<std::byte> bytes(std::string_view s) {
  auto b = coap::as_bytes(s);
  return {b.begin(), b.end()};
}

struct Relays {
  explicit Relays(std::size_t max_relays = 2, std::size_t per_session = max_observe_relays_per_session)
      : relays{[this](session::Session&, std::span<const std::byte> m) {
                 coap::MessageView v;
                 ASSERT_EQ(coap::parse(m, v), coap::ParseError::ok);
                 sent.push_back(coap::Message::from_view(v));
               },
               [this] { return f.now; }, metrics, 1152, max_relays, per_session} {}
  Fixture f;
  metrics::Metrics metrics{"test"};
  std::vector<coap::Message> sent;
  int cancelled = 0;
  ObserveRelays relays;

  // The device's GET /time with Observe `value` and `token`, as the worker hands it over.
  std::shared_ptr<upstream::ObserveHook> request(std::string_view token, std::uint32_t value = 0) {
    return request_on(*f.s, token, value);
  }
  std::shared_ptr<upstream::ObserveHook> request_on(session::Session& s, std::string_view token,
                                                    std::uint32_t value = 0) {
    coap::Message m = exchange::test::message(coap::Type::con, coap::code::get, 1, bytes(token));
    m.add_string_option(coap::option::uri_path, "time");
    m.add_uint_option(coap::option::observe, value);
    auto wire = coap::serialize(m);
    coap::MessageView v;
    EXPECT_EQ(coap::parse(wire, v), coap::ParseError::ok);
    return relays.on_request(s, v);
  }
  static upstream::ForwardResponse answer(std::optional<std::uint32_t> seq, std::string_view payload = "t") {
    upstream::ForwardResponse r;
    r.code = coap::code::content;
    r.content_format = 0;
    auto p = coap::as_bytes(payload);
    r.payload.assign(p.begin(), p.end());
    if (seq) {
      std::array<std::byte, 4> buf{};
      r.options.emplace_back(coap::option::observe,
                             std::vector<std::byte>(buf.begin(), buf.begin() + coap::encode_uint(*seq, buf)));
    }
    return r;
  }
  // The upstream registered: its cancel hook is set and the first answer went to the device.
  std::shared_ptr<upstream::ObserveHook> registered(std::string_view token, std::uint32_t seq) {
    auto hook = request(token);
    EXPECT_TRUE(hook);
    hook->cancel = [this] { ++cancelled; };
    relays.on_first_answer(*f.s, coap::as_bytes(token), answer(seq));
    return hook;
  }
};

TEST(ObserveRelays, NotificationsGoToTheDeviceInOrderWithItsToken) {
  Relays t;
  auto hook = t.registered("tok1", 5);
  EXPECT_EQ(t.relays.size(), 1u);
  hook->notify(Relays::answer(6, "six"));
  hook->notify(Relays::answer(4, "stale"));  // older than 6: dropped (RFC 7641 3.4)
  hook->notify(Relays::answer(7, "seven"));
  ASSERT_EQ(t.sent.size(), 2u);
  EXPECT_EQ(t.sent[0].type, coap::Type::non);
  EXPECT_EQ(t.sent[0].token, bytes("tok1"));
  EXPECT_EQ(coap::decode_uint(t.sent[0].find(coap::option::observe)->value), 6u);
  EXPECT_NE(t.sent[0].find(coap::option::content_format), nullptr);
  EXPECT_EQ(t.sent[1].payload, bytes("seven"));
  EXPECT_NE(t.sent[0].message_id, t.sent[1].message_id);
  EXPECT_EQ(t.cancelled, 0);
}

TEST(ObserveRelays, RstToANotificationEndsTheRelayAndTheUpstreamRegistration) {
  Relays t;
  auto hook = t.registered("tok1", 1);
  hook->notify(Relays::answer(2));
  ASSERT_EQ(t.sent.size(), 1u);
  EXPECT_FALSE(t.relays.on_rst(*t.f.s, static_cast<std::uint16_t>(t.sent[0].message_id + 1)));
  EXPECT_TRUE(t.relays.on_rst(*t.f.s, t.sent[0].message_id));
  EXPECT_EQ(t.relays.size(), 0u);
  EXPECT_EQ(t.cancelled, 1);
  hook->notify(Relays::answer(3));  // one already on its way
  EXPECT_EQ(t.sent.size(), 1u);
}

TEST(ObserveRelays, DeregistrationOrTokenReuseEndsIt) {
  Relays t;
  t.registered("tok1", 1);
  EXPECT_FALSE(t.request("tok1", 1)) << "Observe=1 is not a registration";
  EXPECT_EQ(t.relays.size(), 0u);
  EXPECT_EQ(t.cancelled, 1);
}

TEST(ObserveRelays, SessionEndEndsItsRelays) {
  Relays t;
  t.registered("tok1", 1);
  t.registered("tok2", 1);
  t.relays.closed(*t.f.s);
  EXPECT_EQ(t.relays.size(), 0u);
  EXPECT_EQ(t.cancelled, 2);
}

TEST(ObserveRelays, UpstreamWithoutObserveIsAPlainAnswer) {
  Relays t;
  auto hook = t.request("tok1");
  ASSERT_TRUE(hook);
  t.relays.on_first_answer(*t.f.s, coap::as_bytes("tok1"), Relays::answer(std::nullopt));
  EXPECT_EQ(t.relays.size(), 0u);
}

TEST(ObserveRelays, TheUpstreamsLastWordIsRelayedThenTheRelayEnds) {
  Relays t;
  auto hook = t.registered("tok1", 1);
  auto last = Relays::answer(std::nullopt, "gone");
  last.code = coap::code::not_found;
  hook->notify(last);
  hook->ended();
  ASSERT_EQ(t.sent.size(), 1u);
  EXPECT_EQ(t.sent[0].code, coap::code::not_found);
  EXPECT_EQ(t.relays.size(), 0u);
  EXPECT_EQ(t.cancelled, 0) << "the upstream ended it: nothing to cancel there";
}

TEST(ObserveRelays, BoundRefusesMoreAndTooLargeNotificationsAreDropped) {
  Relays t;
  auto hook = t.registered("tok1", 1);
  t.registered("tok2", 1);
  EXPECT_FALSE(t.request("tok3")) << "max_relays is 2";
  hook->notify(Relays::answer(2, std::string(2000, 'x')));
  EXPECT_TRUE(t.sent.empty());
  EXPECT_EQ(t.relays.size(), 2u);
}

// The relay ends while the upstream has not answered yet (no cancel to call): the hook is marked,
// so the upstream forgets the registration at its first answer instead of keeping it forever.
TEST(ObserveRelays, ARelayEndedBeforeTheFirstAnswerAbandonsItsHook) {
  Relays t;
  auto closed = t.request("tok1");
  auto reused = t.request("tok2");
  ASSERT_TRUE(closed && reused);
  EXPECT_FALSE(closed->abandoned);
  t.request("tok2", 1);  // the token reused (deregistration) before the first answer
  EXPECT_TRUE(reused->abandoned);
  EXPECT_FALSE(closed->abandoned);
  t.relays.closed(*t.f.s);
  EXPECT_TRUE(closed->abandoned);
  EXPECT_EQ(t.relays.size(), 0u);
  // The answers arrive afterwards: no relay, nothing sent.
  t.relays.on_first_answer(*t.f.s, coap::as_bytes("tok1"), Relays::answer(1));
  EXPECT_EQ(t.relays.size(), 0u);
  EXPECT_TRUE(t.sent.empty());
}

TEST(ObserveRelays, EachSessionHasItsOwnBound) {
  Relays t(16, 2);
  const double refused_before = t.metrics.observe_relays_refused(true).Value();
  EXPECT_TRUE(t.request("a"));
  EXPECT_TRUE(t.request("b"));
  EXPECT_FALSE(t.request("c")) << "two per session";
  EXPECT_EQ(t.metrics.observe_relays_refused(true).Value(), refused_before + 1);
  auto* other = t.f.table.create_server(session::Key{*Address::parse("192.0.2.2:5683"), 5683, session::Proto::udp, 0},
                                        *Address::parse("127.0.0.1:5683"), -1, t.f.now, session::State::established);
  ASSERT_NE(other, nullptr);
  EXPECT_TRUE(t.request_on(*other, "c")) << "another device is not held back";
  t.request("a", 1);  // one ends: room again
  EXPECT_TRUE(t.request("c"));
  EXPECT_EQ(t.relays.size(), 3u);
}

}  // namespace
}  // namespace coapgw::server
