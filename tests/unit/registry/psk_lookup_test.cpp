#include "server/psk_lookup.hpp"

#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <deque>
#include <string>

#include "metrics/metrics.hpp"
#include "upstream/forward.hpp"

namespace coapgw::server {
namespace {

using namespace std::chrono_literals;
using metrics::PskLookupResult;

// The registry's HTTP client, answered by the test.
class FakeClient : public upstream::Upstream {
 public:
  struct Call {
    upstream::ForwardRequest request;
    upstream::ForwardDone done;
  };
  void forward(upstream::ForwardRequest request, upstream::ForwardDone done) override {
    calls->push_back({std::move(request), std::move(done)});
  }
  std::deque<Call>* calls;
};

upstream::ForwardResponse answer(std::uint8_t code, std::string body,
                                 upstream::Outcome outcome = upstream::Outcome::ok) {
  upstream::ForwardResponse r;
  r.code = code;
  r.outcome = outcome;
  for (char c : body) r.payload.push_back(static_cast<std::byte>(c));
  return r;
}

class PskLookupTest : public ::testing::Test {
 protected:
  PskLookupTest() {
    PskLookup::Settings s;
    s.url = "http://127.0.0.1:9/psk/{identity}";
    s.cache = {10s, 2s, 100};
    s.max_in_flight = 2;
    s.clock = [this] { return t0; };
    auto client = std::make_unique<FakeClient>();
    client->calls = &calls;
    lookup = std::make_unique<PskLookup>(s, std::move(client), metrics,
                                         [this](const std::string& identity, std::vector<PskLookup::Held> held) {
                                           answered.emplace_back(identity, std::move(held));
                                         });
  }
  static PskLookup::Held held(std::uint16_t port, std::uint8_t tag) {
    PskLookup::Held h;
    h.key = session::Key{*Address::parse("127.0.0.1:" + std::to_string(port)), 5684, session::Proto::dtls, 0};
    h.data = {std::byte{tag}};
    return h;
  }
  double count(PskLookupResult r) { return metrics.psk_lookups(r).Value(); }

  session::TimePoint t0 = session::Clock::now();  // the answers' time
  metrics::Metrics metrics{"test"};
  std::deque<FakeClient::Call> calls;
  std::vector<std::pair<std::string, std::vector<PskLookup::Held>>> answered;
  std::unique_ptr<PskLookup> lookup;
};

TEST_F(PskLookupTest, UrlPartsAndPercentEncodedIdentity) {
  EXPECT_EQ(PskLookup::origin_of("https://reg.example:8443/v1/psk/{identity}?x=1"), "https://reg.example:8443");
  EXPECT_EQ(PskLookup::path_for("http://r:8000/psk/{identity}", "a b/c"), "/psk/a%20b%2Fc");
}

TEST_F(PskLookupTest, OneLookupPerIdentityHoldsEveryWaitingDatagram) {
  EXPECT_EQ(lookup->need_key("dev", [] { return held(1000, 1); }, t0), PskLookup::Verdict::held);
  EXPECT_EQ(lookup->need_key("dev", [] { return held(1001, 2); }, t0), PskLookup::Verdict::held);
  EXPECT_TRUE(lookup->hold_if_waiting(held(1000, 3).key, [] { return held(1000, 3); }));
  EXPECT_FALSE(lookup->hold_if_waiting(held(2000, 0).key, [] { return held(2000, 0); }));
  ASSERT_EQ(calls.size(), 1u);  // deduplicated
  EXPECT_EQ(calls[0].request.method, "GET");
  EXPECT_EQ(calls[0].request.path, "/psk/dev");

  calls[0].done(answer(upstream::coap_code(2, 5), R"({"key":"k1","tenant":"acme"})"));
  ASSERT_EQ(answered.size(), 1u);
  EXPECT_EQ(answered[0].first, "dev");
  ASSERT_EQ(answered[0].second.size(), 3u);
  EXPECT_EQ(answered[0].second[0].data[0], std::byte{1});  // oldest first
  EXPECT_EQ(answered[0].second[2].data[0], std::byte{3});
  EXPECT_EQ(count(PskLookupResult::miss), 1);
  ASSERT_NE(lookup->cache().find("dev"), nullptr);
  EXPECT_EQ(lookup->cache().find("dev")->tenant, "acme");
  // Now cached: the next handshake goes on at once.
  EXPECT_EQ(lookup->need_key("dev", [] { return held(1002, 4); }, t0 + 1s), PskLookup::Verdict::proceed);
  EXPECT_EQ(count(PskLookupResult::hit), 1);
  EXPECT_FALSE(lookup->hold_if_waiting(held(1000, 5).key, [] { return held(1000, 5); }));
}

TEST_F(PskLookupTest, UnknownIsCachedForTheNegativeTtlFailuresAreNot) {
  lookup->need_key("ghost", [] { return held(1, 1); }, t0);
  lookup->need_key("slow", [] { return held(2, 1); }, t0);
  ASSERT_EQ(calls.size(), 2u);
  calls[0].done(answer(upstream::coap_code(4, 4), ""));
  calls[1].done(answer(upstream::coap_code(5, 4), "", upstream::Outcome::timeout));
  EXPECT_EQ(count(PskLookupResult::unknown), 1);
  EXPECT_EQ(count(PskLookupResult::timeout), 1);
  ASSERT_NE(lookup->cache().find("ghost"), nullptr);
  EXPECT_FALSE(lookup->cache().find("ghost")->usable());
  EXPECT_EQ(lookup->cache().find("slow"), nullptr);
  EXPECT_EQ(answered.size(), 2u);  // the held handshakes go on (and fail): the devices retry
  EXPECT_EQ(lookup->need_key("ghost", [] { return held(1, 2); }, t0 + 1s), PskLookup::Verdict::proceed);
  lookup->on_tick(t0 + 3s);
  EXPECT_EQ(lookup->cache().find("ghost"), nullptr);
}

TEST_F(PskLookupTest, MalformedAnswerIsAnError) {
  lookup->need_key("dev", [] { return held(1, 1); }, t0);
  calls[0].done(answer(upstream::coap_code(2, 5), "<html>"));
  EXPECT_EQ(count(PskLookupResult::error), 1);
  EXPECT_EQ(lookup->cache().find("dev"), nullptr);
  EXPECT_EQ(answered.size(), 1u);
}

TEST_F(PskLookupTest, LookupsInFlightAreBounded) {
  EXPECT_EQ(lookup->need_key("a", [] { return held(1, 1); }, t0), PskLookup::Verdict::held);
  EXPECT_EQ(lookup->need_key("b", [] { return held(2, 1); }, t0), PskLookup::Verdict::held);
  EXPECT_EQ(lookup->need_key("c", [] { return held(3, 1); }, t0), PskLookup::Verdict::dropped);
  EXPECT_EQ(calls.size(), 2u);
  EXPECT_EQ(count(PskLookupResult::error), 1);
  calls[0].done(answer(upstream::coap_code(4, 4), ""));
  EXPECT_EQ(lookup->need_key("c", [] { return held(3, 2); }, t0), PskLookup::Verdict::held);
}

TEST_F(PskLookupTest, HeldDatagramsAreBounded) {
  std::size_t held_count = 0;
  for (std::uint16_t i = 0; i < 40; ++i)
    held_count += lookup->need_key("dev", [i] { return held(100 + i, 1); }, t0) == PskLookup::Verdict::held;
  EXPECT_EQ(held_count, PskLookup::max_held_per_slot);
}

TEST_F(PskLookupTest, EveryDroppedDatagramIsCounted) {
  // A restored session's record (or a handshake's) dropped because the lookup's held datagrams are
  // full, or because the worker is stopping, is counted like one dropped for max_in_flight.
  for (std::uint16_t i = 0; i < PskLookup::max_held_per_slot; ++i)
    ASSERT_EQ(lookup->need_key("dev", [i] { return held(100 + i, 1); }, t0), PskLookup::Verdict::held);
  EXPECT_EQ(lookup->need_key("dev", [] { return held(999, 1); }, t0), PskLookup::Verdict::dropped);
  EXPECT_EQ(count(PskLookupResult::error), 1);
  EXPECT_TRUE(lookup->hold_if_waiting(held(100, 2).key, [] { return held(100, 2); }));  // past the slot bound
  EXPECT_EQ(count(PskLookupResult::error), 2);
  lookup->shutdown();
  EXPECT_EQ(lookup->need_key("other", [] { return held(1, 1); }, t0), PskLookup::Verdict::dropped);
  EXPECT_EQ(count(PskLookupResult::error), 3);
}

TEST_F(PskLookupTest, ExpiredEntriesOfLiveSessionsAreAskedAgain) {
  lookup->need_key("live", [] { return held(1, 1); }, t0);
  lookup->need_key("gone", [] { return held(2, 1); }, t0);
  calls[0].done(answer(upstream::coap_code(2, 5), R"({"key":"k"})"));
  calls[1].done(answer(upstream::coap_code(2, 5), R"({"key":"k"})"));
  calls.clear();
  session::Session* fake = reinterpret_cast<session::Session*>(0x1000);  // only its address is used
  lookup->session_up(*fake, "live");
  ASSERT_NE(lookup->sessions_of("live"), nullptr);
  lookup->on_tick(t0 + 11s);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].request.path, "/psk/live");
  calls[0].done(answer(upstream::coap_code(2, 5), R"({"key":"k","banned":true})"));
  ASSERT_EQ(answered.size(), 3u);
  EXPECT_TRUE(answered[2].second.empty());
  EXPECT_FALSE(lookup->cache().find("live")->usable());
  lookup->session_down(*fake, "live");
  EXPECT_EQ(lookup->sessions_of("live"), nullptr);
}

TEST_F(PskLookupTest, AFailedRefreshIsTriedAgainAfterTheNegativeTtl) {
  lookup->need_key("live", [] { return held(1, 1); }, t0);
  calls[0].done(answer(upstream::coap_code(2, 5), R"({"key":"k"})"));
  calls.clear();
  session::Session* fake = reinterpret_cast<session::Session*>(0x1000);  // only its address is used
  lookup->session_up(*fake, "live");
  t0 += 11s;
  lookup->on_tick(t0);
  ASSERT_EQ(calls.size(), 1u);
  calls[0].done(answer(upstream::coap_code(5, 2), "", upstream::Outcome::connect_failed));  // registry down
  calls.clear();
  lookup->on_tick(t0 + 1s);
  EXPECT_TRUE(calls.empty());  // negative_ttl is 2 s
  lookup->on_tick(t0 + 2s);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].request.path, "/psk/live");
  calls[0].done(answer(upstream::coap_code(2, 5), R"({"key":"k","banned":true})"));
  EXPECT_FALSE(lookup->cache().find("live")->usable());  // the ban arrived after all
  lookup->session_down(*fake, "live");
}

TEST_F(PskLookupTest, AnEvictedEntryOfALiveSessionIsAskedAgainOnTheNextTick) {
  lookup->need_key("live", [] { return held(1, 1); }, t0);
  calls[0].done(answer(upstream::coap_code(2, 5), R"({"key":"k"})"));
  calls.clear();
  session::Session* fake = reinterpret_cast<session::Session*>(0x1000);  // only its address is used
  lookup->session_up(*fake, "live");
  // A big fleet: 100 other known devices fill the cache (100 entries) and push "live" out.
  for (int i = 0; i < 100; ++i) {
    const std::string id = "dev-" + std::to_string(i);
    lookup->need_key(id, [] { return held(2, 1); }, t0);
    ASSERT_EQ(calls.size(), 1u);
    calls[0].done(answer(upstream::coap_code(2, 5), R"({"key":"k"})"));
    calls.clear();
  }
  EXPECT_EQ(lookup->cache().find("live"), nullptr);
  EXPECT_GE(metrics.psk_cache_evictions().Value(), 1);
  lookup->on_tick(t0 + 1s);  // well before cache_ttl (10 s)
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].request.path, "/psk/live");
  calls[0].done(answer(upstream::coap_code(2, 5), R"({"key":"k","banned":true})"));
  ASSERT_NE(lookup->cache().find("live"), nullptr);
  EXPECT_FALSE(lookup->cache().find("live")->usable());
  lookup->session_down(*fake, "live");
}

TEST_F(PskLookupTest, AnswersAfterShutdownAreIgnored) {
  lookup->need_key("dev", [] { return held(1, 1); }, t0);
  auto done = std::move(calls[0].done);
  lookup->shutdown();
  done(answer(upstream::coap_code(2, 5), R"({"key":"k"})"));
  EXPECT_TRUE(answered.empty());
  lookup.reset();
  done(answer(upstream::coap_code(2, 5), R"({"key":"k"})"));  // after destruction too
}

}  // namespace
}  // namespace coapgw::server
