// ApiService without sockets: status codes and bodies of DESIGN "Downlink",
// the queue through the API (queued, heard from, answered, expired,
// cancelled) with a fake clock, and the downlink metrics.
#include "api/service.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <deque>

#include "fake_downlink.hpp"
#include "metrics/metrics.hpp"

namespace coapgw::api {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using metrics::DownlinkOutcome;
using Mode = test::FakeDownlink::Mode;

constexpr const char* auth = "Bearer change-me";

class ServiceTest : public ::testing::Test {
 protected:
  ServiceTest() {
    std::vector<config::ApiToken> tokens(1);
    tokens[0].name = "backend";
    tokens[0].token = "change-me";
    ServiceHooks hooks;
    hooks.post = [this](std::function<void()> fn) { posted.push_back(std::move(fn)); };
    hooks.now = [this] { return now; };
    hooks.wake_at = [this](TimePoint at) { wake = at; };
    service = std::make_unique<ApiService>(TokenSet(tokens), DownlinkQueue::Limits{2, 10}, metrics, downlink,
                                           std::move(hooks));
  }

  // Runs what was posted to the "API thread".
  void run() {
    while (!posted.empty()) {
      auto fn = std::move(posted.front());
      posted.pop_front();
      fn();
    }
  }

  ApiResponse call(const std::string& method, const std::string& target, const std::string& body = "",
                   const std::string& authorization = auth) {
    std::optional<ApiResponse> out;
    service->handle({method, target, authorization, body}, [&](ApiResponse r) { out = std::move(r); });
    run();
    EXPECT_TRUE(out.has_value()) << method << " " << target;
    return out.value_or(ApiResponse{0, "", ""});
  }

  double outcome(DownlinkOutcome o) { return metrics.downlink_requests(o).Value(); }

  metrics::Metrics metrics{"test"};
  test::FakeDownlink downlink;
  std::deque<std::function<void()>> posted;
  TimePoint now{std::chrono::hours(5)};
  std::optional<TimePoint> wake;
  std::unique_ptr<ApiService> service;
};

TEST_F(ServiceTest, UnauthorizedLooksTheSameForEveryDevice) {
  downlink.set("known", Mode::answer);
  const std::string body = R"({"method":"GET","path":"/x"})";
  const auto known = call("POST", "/v1/devices/known/requests", body, "Bearer wrong");
  const auto unknown = call("POST", "/v1/devices/unknown/requests", body, "Bearer wrong");
  const auto missing = call("POST", "/v1/devices/known/requests", body, "");
  const auto bad_path = call("GET", "/nope", "", "");
  for (const auto* r : {&known, &unknown, &missing, &bad_path}) {
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->body, known.body);
  }
  EXPECT_EQ(downlink.sent_count(), 0u);
  EXPECT_EQ(metrics.api_rejected(metrics::ApiReject::unauthorized).Value(), 4);
}

TEST_F(ServiceTest, AnsweredIs200WithTheAnswer) {
  downlink.set("dev-1", Mode::answer);
  const auto r = call("POST", "/v1/devices/dev-1/requests", R"({"method":"GET","path":"/temp","timeout":"3s"})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto j = json::parse(r.body);
  EXPECT_EQ(j["code"], "2.05");
  EXPECT_EQ(j["payload"], "echo /temp");
  EXPECT_EQ(j["session"], 42);
  EXPECT_EQ(j["remote"], "192.0.2.1:5684");
  ASSERT_EQ(downlink.sent.size(), 1u);
  EXPECT_EQ(downlink.sent[0].timeout, 3s);
  EXPECT_EQ(downlink.sent[0].device.identity, "dev-1");
  EXPECT_EQ(outcome(DownlinkOutcome::answered), 1);
}

TEST_F(ServiceTest, StatusCodesOfTheOtherOutcomes) {
  downlink.set("slow", Mode::timeout);
  downlink.set("busy", Mode::rejected);
  const std::string body = R"({"method":"GET","path":"/x"})";
  EXPECT_EQ(call("POST", "/v1/devices/slow/requests", body).status, 504);
  EXPECT_EQ(call("POST", "/v1/devices/busy/requests", body).status, 503);
  EXPECT_EQ(call("POST", "/v1/devices/nobody/requests", body).status, 404);
  EXPECT_EQ(call("POST", "/v1/devices/nobody/requests", "{").status, 400);
  EXPECT_EQ(call("POST", "/v1/devices/coap:1.2.3.4/requests", body).status, 400);
  EXPECT_EQ(call("GET", "/v1/devices/x/requests").status, 405);
  EXPECT_EQ(call("GET", "/v1/devices/x/requests").allow, "POST");
  EXPECT_EQ(call("GET", "/v2").status, 404);
  EXPECT_EQ(outcome(DownlinkOutcome::timeout), 1);
  EXPECT_EQ(outcome(DownlinkOutcome::rejected), 1);
  EXPECT_EQ(outcome(DownlinkOutcome::no_session), 1);
  EXPECT_EQ(metrics.api_rejected(metrics::ApiReject::bad_request).Value(), 2);
}

TEST_F(ServiceTest, QueuedUntilHeardFromThenAnswered) {
  const auto r = call("POST", "/v1/devices/sleepy/requests", R"({"method":"PUT","path":"/led","payload":"on","queue_for":"1h"})");
  ASSERT_EQ(r.status, 202) << r.body;
  const auto id = json::parse(r.body)["id"].get<std::string>();
  EXPECT_EQ(json::parse(r.body)["state"], "queued");
  EXPECT_EQ(metrics.downlink_queued().Value(), 1);
  EXPECT_EQ(wake, now + 1h);
  auto state = call("GET", "/v1/devices/sleepy/requests/" + id);
  EXPECT_EQ(json::parse(state.body)["state"], "queued");
  // Another device cannot read it.
  EXPECT_EQ(call("GET", "/v1/devices/other/requests/" + id).status, 404);

  downlink.set("sleepy", Mode::hold);
  DeviceRef sleepy;
  sleepy.identity = "sleepy";
  service->device_heard(sleepy);
  ASSERT_EQ(downlink.held_count(), 1u);
  EXPECT_EQ(downlink.sent.back().request.payload, "on");
  EXPECT_EQ(json::parse(call("GET", "/v1/devices/sleepy/requests/" + id).body)["state"], "sent");
  EXPECT_EQ(metrics.downlink_queued().Value(), 0);
  downlink.answer_held(test::FakeDownlink::answered("done", 68));
  run();
  state = call("GET", "/v1/devices/sleepy/requests/" + id);
  const auto j = json::parse(state.body);
  EXPECT_EQ(j["state"], "answered");
  EXPECT_EQ(j["answer"]["code"], "2.04");
  EXPECT_EQ(j["answer"]["payload"], "done");
  EXPECT_EQ(j["method"], "PUT");
  EXPECT_EQ(outcome(DownlinkOutcome::queued), 1);
  EXPECT_EQ(outcome(DownlinkOutcome::answered), 1);
}

TEST_F(ServiceTest, QueueFullIs429AndExpiryIsCounted) {
  const std::string body = R"({"method":"GET","path":"/x","queue_for":"10s"})";
  EXPECT_EQ(call("POST", "/v1/devices/s/requests", body).status, 202);
  EXPECT_EQ(call("POST", "/v1/devices/s/requests", body).status, 202);
  EXPECT_EQ(call("POST", "/v1/devices/s/requests", body).status, 429);
  EXPECT_EQ(outcome(DownlinkOutcome::rejected), 1);
  now += 10s;
  service->expire();
  EXPECT_EQ(outcome(DownlinkOutcome::expired), 2);
  EXPECT_EQ(metrics.downlink_queued().Value(), 0);
  const auto state = json::parse(call("GET", "/v1/devices/s/requests/1").body);
  EXPECT_EQ(state["state"], "expired");
  EXPECT_EQ(call("POST", "/v1/devices/s/requests", body).status, 202);
}

TEST_F(ServiceTest, DeleteCancelsAQueuedRequest) {
  const auto r = call("POST", "/v1/devices/s/requests", R"({"method":"GET","path":"/x","queue_for":"1m"})");
  const auto id = json::parse(r.body)["id"].get<std::string>();
  const auto cancelled = call("DELETE", "/v1/devices/s/requests/" + id);
  EXPECT_EQ(cancelled.status, 200);
  EXPECT_EQ(json::parse(cancelled.body)["state"], "cancelled");
  EXPECT_EQ(call("DELETE", "/v1/devices/s/requests/" + id).status, 409);
  EXPECT_EQ(call("DELETE", "/v1/devices/s/requests/12345").status, 404);
  EXPECT_EQ(outcome(DownlinkOutcome::cancelled), 1);
  DeviceRef s;
  s.identity = "s";
  service->device_heard(s);
  EXPECT_EQ(downlink.sent_count(), 1u);  // only the first, direct attempt
}

TEST_F(ServiceTest, ObservationsAndGroups) {
  downlink.set("d", Mode::answer);
  const auto o = call("POST", "/v1/devices/d/observations", R"({"path":"/t","notify":"http://127.0.0.1:1/n"})");
  ASSERT_EQ(o.status, 200) << o.body;
  EXPECT_EQ(json::parse(o.body)["id"], "7");
  EXPECT_EQ(call("POST", "/v1/devices/gone/observations", R"({"path":"/t","notify":"http://h/n"})").status, 404);
  EXPECT_EQ(call("DELETE", "/v1/devices/d/observations/7").status, 200);
  EXPECT_EQ(call("DELETE", "/v1/devices/d/observations/8").status, 404);
  const auto g = call("POST", "/v1/groups/requests", R"({"group":"224.0.1.187:5683","method":"GET","path":"/w"})");
  ASSERT_EQ(g.status, 200) << g.body;
  const auto j = json::parse(g.body);
  ASSERT_EQ(j["responses"].size(), 2u);
  EXPECT_EQ(j["responses"][1]["remote"], "127.0.0.2:5683");
  EXPECT_EQ(j["responses"][0]["payload"], "/w");
  EXPECT_EQ(call("POST", "/v1/groups/requests", R"({"group":"10.0.0.1:5683","method":"GET","path":"/w"})").status, 400);
}

TEST_F(ServiceTest, ReloadedTokensApplyToTheNextRequest) {
  std::vector<config::ApiToken> tokens(1);
  tokens[0].name = "new";
  tokens[0].token = "rotated";
  service->set_tokens(TokenSet(tokens));
  EXPECT_EQ(call("GET", "/v2").status, 401);
  EXPECT_EQ(call("GET", "/v2", "", "Bearer rotated").status, 404);
}

TEST_F(ServiceTest, AnswersAfterTheServiceIsGoneAreDropped) {
  downlink.set("d", Mode::hold);
  bool replied = false;
  service->handle({"POST", "/v1/devices/d/requests", auth, R"({"method":"GET","path":"/x"})"},
                  [&](ApiResponse) { replied = true; });
  service.reset();
  downlink.answer_held(test::FakeDownlink::answered("late"));
  run();
  EXPECT_FALSE(replied);
}

}  // namespace
}  // namespace coapgw::api
