// One test per rule of coap_session(3) and DESIGN.md "Session model", on a fake clock (explicit time points).
#include <gtest/gtest.h>

#include <vector>

#include "session/table.hpp"

using namespace coapgw;
using namespace coapgw::session;
using namespace std::chrono_literals;

namespace {

struct FakeContext : Context {
  int worker_index() const override { return 3; }
};

struct FakeTls : TlsState {
  int handle = 42;
  std::vector<std::byte> key{std::byte{1}, std::byte{2}};
  std::string hint = "coapgw";
  void* native_handle() const override { return const_cast<int*>(&handle); }
  TlsLibrary library() const override { return TlsLibrary::openssl; }
  std::span<const std::byte> psk_key() const override { return key; }
  std::string_view psk_hint() const override { return hint; }
  std::string_view identity() const override { return "dev"; }
};

Key key(std::uint16_t port, Proto proto = Proto::udp) {
  return Key{Address::v4({127, 0, 0, 1}, port), 5683, proto};
}

struct Fixture : ::testing::Test {
  FakeContext ctx;
  std::unique_ptr<Budget> budget_ptr;  // declared before the table: outlives it
  std::vector<std::pair<Event, std::optional<CloseReason>>> events;
  TimePoint t0 = TimePoint{} + 1000s;
  Address local = *Address::parse("127.0.0.1:5683");
  std::unique_ptr<Table> table;

  void SetUp() override { make_table(100); }
  void make_table(std::size_t max, std::chrono::milliseconds idle = 300s) {
    table.reset();
    budget_ptr = std::make_unique<Budget>(max);
    table = std::make_unique<Table>(&ctx, *budget_ptr, Table::Settings{idle, 3},
                                    [this](Session&, const EventInfo& e) { events.emplace_back(e.event, e.reason); });
  }
};

TEST_F(Fixture, ReferenceIncrementsAndReturnsTheSession) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->refcount(), 0);
  Session& r = s->reference();
  EXPECT_EQ(&r, s);
  EXPECT_EQ(s->refcount(), 1);
}

TEST_F(Fixture, ClientSessionsStartAtOneAndAreFreedAtZero) {
  Session* c = table->create_client(key(2000), local, t0);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->type(), Type::client);
  EXPECT_EQ(c->refcount(), 1);
  EXPECT_FALSE(c->idle());
  EXPECT_EQ(budget_ptr->used(), 1u);
  c->release();
  EXPECT_EQ(table->find(key(2000)), nullptr);
  EXPECT_EQ(table->size(), 0u);
  EXPECT_EQ(budget_ptr->used(), 0u);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().first, Event::session_closed);
}

TEST_F(Fixture, ServerSessionsStartAtZeroInTheIdlePool) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  EXPECT_EQ(s->type(), Type::server);
  EXPECT_EQ(s->refcount(), 0);
  EXPECT_TRUE(s->idle());
  EXPECT_EQ(table->idle_count(), 1u);
  EXPECT_EQ(table->counts().idle_of(Proto::udp), 1);
}

TEST_F(Fixture, ReleasedServerSessionReturnsToIdlePoolNotFreed) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  s->reference();
  EXPECT_FALSE(s->idle());
  EXPECT_EQ(table->idle_count(), 0u);
  s->release();
  EXPECT_TRUE(s->idle());
  EXPECT_EQ(table->find(key(1000)), s);
  EXPECT_EQ(table->idle_count(), 1u);
}

TEST_F(Fixture, ReleaseOfUnreferencedSessionIsNoOp) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  s->release();
  EXPECT_EQ(s->refcount(), 0);
  EXPECT_EQ(table->find(key(1000)), s);
}

TEST_F(Fixture, IdleServerSessionFreedAfterIdleTimeoutNotBefore) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  (void)s;
  EXPECT_EQ(table->expire(t0 + 299s), 0u);
  EXPECT_NE(table->find(key(1000)), nullptr);
  ASSERT_TRUE(table->next_expiry().has_value());
  EXPECT_EQ(*table->next_expiry(), t0 + 300s);
  EXPECT_EQ(table->expire(t0 + 300s), 1u);
  EXPECT_EQ(table->find(key(1000)), nullptr);
  EXPECT_EQ(events.back().second, CloseReason::idle_timeout);
  EXPECT_EQ(table->stats().closed[1][static_cast<int>(CloseReason::idle_timeout)], 1u);
}

TEST_F(Fixture, TrafficPostponesIdleExpiry) {
  table->create_server(key(1000), local, 1, t0);
  table->lookup_and_touch(key(1000), t0 + 200s);
  EXPECT_EQ(table->expire(t0 + 300s), 0u);
  EXPECT_EQ(table->expire(t0 + 500s), 1u);
}

TEST_F(Fixture, ReferencedSessionNeverExpires) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  s->reference();
  EXPECT_EQ(table->expire(t0 + 10000s), 0u);
  EXPECT_EQ(table->find(key(1000)), s);
  s->release();  // back to the pool, as fresh as the newest member
  EXPECT_TRUE(s->idle());
}

TEST_F(Fixture, FullTableReclaimsLeastRecentlyUsedIdleSession) {
  make_table(3);
  table->create_server(key(1), local, 1, t0);
  table->create_server(key(2), local, 1, t0 + 1s);
  table->create_server(key(3), local, 1, t0 + 2s);
  table->lookup_and_touch(key(1), t0 + 3s);  // 2 is now the least recently used
  Session* n = table->create_server(key(4), local, 1, t0 + 4s);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(table->find(key(2)), nullptr);
  EXPECT_NE(table->find(key(1)), nullptr);
  EXPECT_NE(table->find(key(3)), nullptr);
  EXPECT_EQ(table->stats().closed[1][static_cast<int>(CloseReason::evicted)], 1u);
  EXPECT_EQ(budget_ptr->used(), 3u);
}

// Issue 11: a plain UDP newcomer (its address unverified, so possibly spoofed) reclaims only idle
// plain sessions; a DTLS session, whose peer passed the cookie exchange and the handshake, is never
// its victim. A DTLS newcomer takes the least recently used idle session of any protocol.
TEST_F(Fixture, PlainNewcomerNeverReclaimsAnIdleDtlsSession) {
  make_table(2);
  table->create_server(key(1, Proto::dtls), local, 1, t0);
  table->create_server(key(2), local, 1, t0 + 1s);
  // The DTLS session is the least recently used, yet the plain newcomer takes the plain one.
  ASSERT_NE(table->create_server(key(3), local, 1, t0 + 2s), nullptr);
  EXPECT_NE(table->find(key(1, Proto::dtls)), nullptr);
  EXPECT_EQ(table->find(key(2)), nullptr);
  ASSERT_NE(table->create_server(key(4), local, 1, t0 + 3s), nullptr);
  EXPECT_NE(table->find(key(1, Proto::dtls)), nullptr);
  EXPECT_EQ(table->stats().closed[static_cast<int>(Proto::dtls)][static_cast<int>(CloseReason::evicted)], 0u);
  // With only the DTLS session idle, a plain newcomer is refused.
  table->find(key(4))->reference();
  EXPECT_EQ(table->create_server(key(5), local, 1, t0 + 4s), nullptr);
  EXPECT_EQ(table->stats().refused_full, 1u);
  EXPECT_NE(table->find(key(1, Proto::dtls)), nullptr);
  // A DTLS newcomer may reclaim it when no plain session is idle.
  ASSERT_NE(table->create_server(key(6, Proto::dtls), local, 1, t0 + 5s), nullptr);
  EXPECT_EQ(table->find(key(1, Proto::dtls)), nullptr);
}

TEST_F(Fixture, DtlsNewcomerTakesAnIdlePlainSessionBeforeAnOlderDtlsOne) {
  make_table(3);
  table->create_server(key(1, Proto::dtls), local, 1, t0);  // the oldest
  table->create_server(key(2), local, 1, t0 + 1s);
  table->create_server(key(3), local, 1, t0 + 2s);
  ASSERT_NE(table->create_server(key(4, Proto::dtls), local, 1, t0 + 3s), nullptr);
  EXPECT_NE(table->find(key(1, Proto::dtls)), nullptr);
  EXPECT_EQ(table->find(key(2)), nullptr);
}

TEST_F(Fixture, IdlePoolsOfEachProtocolExpireInOrder) {
  table->create_server(key(1, Proto::dtls), local, 1, t0);
  table->create_server(key(2), local, 1, t0 + 10s);
  table->create_server(key(3, Proto::dtls), local, 1, t0 + 20s);
  EXPECT_EQ(table->next_expiry(), t0 + 300s);
  EXPECT_EQ(table->expire(t0 + 310s), 2u);  // 1 and 2
  EXPECT_NE(table->find(key(3, Proto::dtls)), nullptr);
  EXPECT_EQ(table->next_expiry(), t0 + 320s);
  EXPECT_EQ(table->idle_count(), 1u);
  EXPECT_EQ(table->counts().idle_of(Proto::udp), 0);
  EXPECT_EQ(table->counts().idle_of(Proto::dtls), 1);
}

TEST_F(Fixture, ReferencedSessionIsNeverReclaimed) {
  make_table(2);
  Session* a = table->create_server(key(1), local, 1, t0);
  Session* b = table->create_server(key(2), local, 1, t0 + 1s);
  a->reference();
  Session* c = table->create_server(key(3), local, 1, t0 + 2s);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(table->find(key(1)), a);  // referenced, older, kept
  EXPECT_EQ(table->find(key(2)), nullptr);
  (void)b;
  c->reference();
  EXPECT_EQ(table->create_server(key(4), local, 1, t0 + 3s), nullptr);  // nothing idle to reclaim
  EXPECT_EQ(table->stats().refused_full, 1u);
  EXPECT_EQ(table->size(), 2u);
}

TEST_F(Fixture, BudgetIsSharedAcrossWorkersButReclaimIsLocal) {
  Budget shared(2);
  FakeContext other_ctx;
  Table w0(&ctx, shared, {300s, 0});
  Table w1(&other_ctx, shared, {300s, 1});
  ASSERT_NE(w0.create_server(key(1), local, 1, t0), nullptr);
  ASSERT_NE(w1.create_server(key(2), local, 1, t0), nullptr);
  // w1 is full; it reclaims its own idle session, never w0's.
  ASSERT_NE(w1.create_server(key(3), local, 1, t0 + 1s), nullptr);
  EXPECT_NE(w0.find(key(1)), nullptr);
  EXPECT_EQ(w1.find(key(2)), nullptr);
  EXPECT_EQ(shared.used(), 2u);
}

TEST_F(Fixture, DisconnectedClosesAndDropsFromIndex) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  s->disconnected(NackReason::rst);
  EXPECT_EQ(table->find(key(1000)), nullptr);
  EXPECT_EQ(events.back().first, Event::session_closed);
  EXPECT_EQ(events.back().second, CloseReason::disconnected);
  EXPECT_EQ(budget_ptr->used(), 0u);
}

TEST_F(Fixture, DisconnectedWhileReferencedFreesOnLastRelease) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  s->reference();
  s->disconnected(NackReason::tls_failed);
  EXPECT_EQ(events.back().second, CloseReason::tls_failed);
  EXPECT_EQ(table->find(key(1000)), nullptr);
  EXPECT_TRUE(s->closed());
  EXPECT_EQ(table->detached_count(), 1u);
  EXPECT_EQ(budget_ptr->used(), 1u);
  // The peer can already start a new session while the old object is still referenced.
  EXPECT_NE(table->create_server(key(1000), local, 1, t0 + 1s), nullptr);
  s->release();
  EXPECT_EQ(table->detached_count(), 0u);
  EXPECT_EQ(budget_ptr->used(), 1u);
}

TEST_F(Fixture, SetTypeClientConvertsServerAndAddsReference) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  EXPECT_TRUE(s->set_type_client());
  EXPECT_EQ(s->type(), Type::client);
  EXPECT_EQ(s->refcount(), 1);
  EXPECT_FALSE(s->idle());
  EXPECT_FALSE(s->set_type_client());  // already a client
  EXPECT_EQ(table->counts().sessions(Proto::udp, Type::client, State::none), 1);
  EXPECT_EQ(table->counts().sessions(Proto::udp, Type::server, State::none), 0);
  s->release();  // client rule: freed at zero
  EXPECT_EQ(table->find(key(1000)), nullptr);
}

TEST_F(Fixture, SetTypeServerEndsCallHomeAndKeepsTheSession) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  EXPECT_FALSE(s->set_type_server());  // not a client
  ASSERT_TRUE(s->set_type_client());
  s->reference();  // an exchange in flight
  EXPECT_TRUE(s->set_type_server());
  EXPECT_EQ(s->type(), Type::server);
  EXPECT_EQ(s->refcount(), 1);
  EXPECT_FALSE(s->idle());
  s->release();  // server rule: to the idle pool, not freed
  EXPECT_EQ(table->find(key(1000)), s);
  EXPECT_TRUE(s->idle());
  EXPECT_EQ(table->counts().sessions(Proto::udp, Type::client, State::none), 0);
  EXPECT_EQ(table->counts().sessions(Proto::udp, Type::server, State::none), 1);
}

int g_released = 0;
void release_hook(void* p) {
  ++g_released;
  delete static_cast<int*>(p);
}

TEST_F(Fixture, AppDataRoundTripWithReleaseHook) {
  g_released = 0;
  Session* s = table->create_server(key(1000), local, 1, t0);
  EXPECT_EQ(s->app_data(), nullptr);
  auto* first = new int(1);
  s->set_app_data(first, release_hook);
  EXPECT_EQ(s->app_data(), first);
  s->set_app_data(new int(2), release_hook);  // replacing releases the old value
  EXPECT_EQ(g_released, 1);
  EXPECT_EQ(*static_cast<int*>(s->app_data()), 2);
  table->expire(t0 + 301s);  // freeing releases the current value
  EXPECT_EQ(g_released, 2);
}

TEST_F(Fixture, Accessors) {
  Session* s = table->create_server(key(1000, Proto::dtls), local, 7, t0);
  EXPECT_EQ(s->addr_remote(), Address::v4({127, 0, 0, 1}, 1000));
  EXPECT_EQ(s->addr_local(), local);
  EXPECT_EQ(s->addr_mcast(), nullptr);
  EXPECT_EQ(s->context(), &ctx);
  EXPECT_EQ(s->context()->worker_index(), 3);
  EXPECT_EQ(s->ifindex(), 7);
  EXPECT_EQ(s->proto(), Proto::dtls);
  EXPECT_EQ(s->state(), State::none);
  EXPECT_EQ(s->type(), Type::server);
  TlsLibrary lib = TlsLibrary::openssl;
  EXPECT_EQ(s->tls(&lib), nullptr);
  EXPECT_EQ(lib, TlsLibrary::none);
  EXPECT_TRUE(s->psk_hint().empty());
  EXPECT_TRUE(s->psk_key().empty());

  auto tls = std::make_unique<FakeTls>();
  auto* raw = tls.get();
  s->set_tls(std::move(tls));
  EXPECT_EQ(s->tls(&lib), &raw->handle);
  EXPECT_EQ(lib, TlsLibrary::openssl);
  EXPECT_EQ(s->psk_key().size(), 2u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(s->psk_hint().data()), s->psk_hint().size()), "coapgw");
  s->set_ifindex(9);
  EXPECT_EQ(s->ifindex(), 9);
  EXPECT_EQ(s->id() >> 48, 3u);  // the worker index is part of the id
}

TEST_F(Fixture, PskHintOnlyForServerSessions) {
  Session* s = table->create_client(key(1000, Proto::dtls), local, t0);
  s->set_tls(std::make_unique<FakeTls>());
  EXPECT_TRUE(s->psk_hint().empty());
  EXPECT_EQ(s->psk_key().size(), 2u);
}

TEST_F(Fixture, MulticastClientRemoteFollowsResponderAndResets) {
  Session* c = table->create_client(key(1000), local, t0);
  auto group = *Address::parse("224.0.1.187:5683");
  c->set_addr_mcast(group);
  ASSERT_NE(c->addr_mcast(), nullptr);
  EXPECT_EQ(*c->addr_mcast(), group);
  EXPECT_EQ(c->addr_remote(), group);
  auto responder = *Address::parse("127.0.0.9:5683");
  c->set_addr_remote_responder(responder);
  EXPECT_EQ(c->addr_remote(), responder);
  c->reset_remote_to_mcast();  // next send goes to the group again
  EXPECT_EQ(c->addr_remote(), group);
  c->set_addr_remote_responder(responder);
  c->release();  // freed: found again under the key it was created with
  EXPECT_EQ(table->size(), 0u);
  EXPECT_EQ(budget_ptr->used(), 0u);
}

TEST_F(Fixture, StateCountsFollowTransitionsAndReturnToZero) {
  Session* a = table->create_server(key(1, Proto::dtls), local, 1, t0);
  Session* b = table->create_server(key(2, Proto::dtls), local, 1, t0);
  a->set_state(State::handshake);
  b->set_state(State::handshake);
  EXPECT_EQ(table->counts().sessions(Proto::dtls, Type::server, State::handshake), 2);
  a->set_state(State::established);
  EXPECT_EQ(table->counts().sessions(Proto::dtls, Type::server, State::established), 1);
  EXPECT_EQ(table->counts().sessions(Proto::dtls, Type::server, State::handshake), 1);
  EXPECT_EQ(std::count_if(events.begin(), events.end(),
                          [](auto& e) { return e.first == Event::session_established; }), 1);
  table->close_all(CloseReason::shutdown);
  EXPECT_EQ(table->counts().sessions(Proto::dtls, Type::server, State::established), 0);
  EXPECT_EQ(table->counts().sessions(Proto::dtls, Type::server, State::handshake), 0);
  EXPECT_EQ(table->counts().idle_of(Proto::dtls), 0);
  EXPECT_EQ(table->size(), 0u);
}

TEST_F(Fixture, ServerSessionBornInItsFirstStateIsNeverCountedInNone) {
  // A plain CoAP session is established at once, a DTLS one starts in handshake: the per-state counts
  // (read by the metrics scrape on another thread) never see them in state none.
  Session* u = table->create_server(key(1, Proto::udp), local, 1, t0, State::established);
  Session* d = table->create_server(key(2, Proto::dtls), local, 1, t0, State::handshake);
  EXPECT_EQ(u->state(), State::established);
  EXPECT_EQ(d->state(), State::handshake);
  EXPECT_EQ(table->counts().sessions(Proto::udp, Type::server, State::established), 1);
  EXPECT_EQ(table->counts().sessions(Proto::udp, Type::server, State::none), 0);
  EXPECT_EQ(table->counts().sessions(Proto::dtls, Type::server, State::handshake), 1);
  EXPECT_EQ(table->counts().sessions(Proto::dtls, Type::server, State::none), 0);
  ASSERT_EQ(events.size(), 3u);  // new + established for the first, new for the second
  EXPECT_EQ(events[0].first, Event::session_new);
  EXPECT_EQ(events[1].first, Event::session_established);
  EXPECT_EQ(events[2].first, Event::session_new);
  table->close_all(CloseReason::shutdown);
  EXPECT_EQ(table->counts().sessions(Proto::udp, Type::server, State::established), 0);
  EXPECT_EQ(table->counts().sessions(Proto::dtls, Type::server, State::handshake), 0);
}

TEST_F(Fixture, EventsForNewAndClosed) {
  table->create_server(key(1), local, 1, t0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].first, Event::session_new);
  table->expire(t0 + 1h);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].first, Event::session_closed);
}

TEST_F(Fixture, ReuseCountedWhenIdleSessionResumed) {
  table->create_server(key(1), local, 1, t0);
  table->lookup_and_touch(key(1), t0 + 100ms);  // same burst: not a resumption
  EXPECT_EQ(table->stats().reused[1], 0u);
  table->lookup_and_touch(key(1), t0 + 60s);
  EXPECT_EQ(table->stats().reused[1], 1u);
}

TEST_F(Fixture, SessionKeyIncludesProtoAndLocalPort) {
  Session* u = table->create_server(key(1, Proto::udp), local, 1, t0);
  Session* d = table->create_server(key(1, Proto::dtls), local, 1, t0);
  EXPECT_NE(u, d);
  Key other = key(1);
  other.local_port = 9999;
  EXPECT_EQ(table->find(other), nullptr);
}

TEST_F(Fixture, ManySessionsExpireInOrder) {
  make_table(10000);
  for (std::uint16_t i = 0; i < 1000; ++i) table->create_server(key(i), local, 1, t0 + std::chrono::seconds(i));
  EXPECT_EQ(table->expire(t0 + 300s + 499s), 500u);
  EXPECT_EQ(table->find(key(499)), nullptr);
  EXPECT_NE(table->find(key(500)), nullptr);
}

}  // namespace

namespace {

// RFC 9146: a DTLS session's address moves with its Connection ID; its key moves with it.
TEST_F(Fixture, MoveRemoteRekeysTheSessionUnlessTheNewAddressIsTaken) {
  Session* s = table->create_server(key(1000), local, 1, t0);
  Session* other = table->create_server(key(2000), local, 1, t0);
  const Key to = key(3000);
  ASSERT_TRUE(table->move_remote(*s, to.remote));
  EXPECT_EQ(s->addr_remote(), to.remote);
  EXPECT_EQ(table->find(to), s);
  EXPECT_EQ(table->find(key(1000)), nullptr);
  EXPECT_EQ(table->size(), 2u);
  EXPECT_FALSE(table->move_remote(*s, key(2000).remote));  // held by `other`
  EXPECT_EQ(table->find(key(2000)), other);
  EXPECT_EQ(s->addr_remote(), to.remote);
  s->reference();                              // kept alive past close() for the last check
  table->close(*s, CloseReason::peer_closed);  // closes under its new key
  EXPECT_EQ(table->find(to), nullptr);
  EXPECT_FALSE(table->move_remote(*s, key(4000).remote));  // a closed session does not move
  s->release();
}

}  // namespace
