// Pure parts of the backend API: device names, bearer tokens, routes, request
// bodies and the JSON answers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api/answers.hpp"
#include "api/device_ref.hpp"
#include "api/request_body.hpp"
#include "api/routes.hpp"
#include "api/tokens.hpp"

namespace coapgw::api {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

TEST(DeviceRef, IdentityIsPercentDecoded) {
  const auto r = parse_device_ref("sensor%2F1%20a");
  ASSERT_TRUE(r.device) << r.error;
  EXPECT_EQ(r.device->kind, DeviceRef::Kind::identity);
  EXPECT_EQ(r.device->identity, "sensor/1 a");
  EXPECT_EQ(r.device->key(), "sensor/1 a");
}

TEST(DeviceRef, PlainDevicesByAddress) {
  auto v4 = parse_device_ref("coap:192.0.2.7:5683");
  ASSERT_TRUE(v4.device) << v4.error;
  EXPECT_EQ(v4.device->kind, DeviceRef::Kind::plain);
  EXPECT_EQ(v4.device->remote.to_string(), "192.0.2.7:5683");
  EXPECT_EQ(v4.device->key(), "coap:192.0.2.7:5683");
  auto v6 = parse_device_ref("coap:%5B::1%5D:61616");
  ASSERT_TRUE(v6.device) << v6.error;
  EXPECT_EQ(v6.device->remote.to_string(), "[::1]:61616");
  EXPECT_TRUE(parse_device_ref("coap:[::1]:5683").device);
}

TEST(DeviceRef, Refusals) {
  for (const char* bad : {"", "coap:", "coap:1.2.3.4", "coap:1.2.3.4:0", "coap:0.0.0.0:5683", "coap:224.0.1.187:5683",
                          "coap:[::1]", "coap:host:5683", "a%0Ab", "a%7f"}) {
    const auto r = parse_device_ref(bad);
    EXPECT_FALSE(r.device) << bad;
    EXPECT_FALSE(r.error.empty()) << bad;
  }
  EXPECT_FALSE(parse_device_ref(std::string(max_identity_bytes + 1, 'x')).device);
  EXPECT_TRUE(parse_device_ref(std::string(max_identity_bytes, 'x')).device);
}

TokenSet two_tokens() {
  std::vector<config::ApiToken> tokens(2);
  tokens[0].name = "backend";
  tokens[0].token = "change-me";
  tokens[1].name = "ops";
  tokens[1].token = "other-token";
  return TokenSet(tokens);
}

TEST(Tokens, BearerCheck) {
  const TokenSet set = two_tokens();
  EXPECT_EQ(set.check("Bearer change-me"), "backend");
  EXPECT_EQ(set.check("bearer other-token"), "ops");
  EXPECT_EQ(set.check("BEARER  change-me "), "backend");
  for (const char* bad : {"", "Bearer", "Bearer ", "Bearer change-m", "Bearer change-me2", "Basic change-me",
                          "change-me", "Bearerchange-me", "Bearer CHANGE-ME"})
    EXPECT_FALSE(set.check(bad)) << bad;
  EXPECT_FALSE(TokenSet().check("Bearer change-me"));
}

TEST(Routes, Endpoints) {
  auto m = match_route("POST", "/v1/devices/abc/requests");
  EXPECT_EQ(m.endpoint, Endpoint::device_request);
  EXPECT_EQ(m.device, "abc");
  m = match_route("GET", "/v1/devices/coap:%5B::1%5D:5683/requests/12?x=1");
  EXPECT_EQ(m.endpoint, Endpoint::request_state);
  EXPECT_EQ(m.device, "coap:%5B::1%5D:5683");
  EXPECT_EQ(m.id, 12u);
  EXPECT_EQ(match_route("DELETE", "/v1/devices/a/requests/3").endpoint, Endpoint::request_cancel);
  EXPECT_EQ(match_route("POST", "/v1/devices/a/observations").endpoint, Endpoint::observe);
  EXPECT_EQ(match_route("DELETE", "/v1/devices/a/observations/9").endpoint, Endpoint::observe_cancel);
  EXPECT_EQ(match_route("POST", "/v1/groups/requests").endpoint, Endpoint::group_request);
  m = match_route("GET", "/v1/devices/a/requests");
  EXPECT_EQ(m.endpoint, Endpoint::method_not_allowed);
  EXPECT_EQ(m.allow, "POST");
  EXPECT_EQ(match_route("PUT", "/v1/devices/a/requests/3").allow, "GET, DELETE");
  for (const char* target : {"/", "/v1/devices", "/v1/devices//requests", "/v1/devices/a/requests/x",
                             "/v1/devices/a/requests/1/2", "/v1/devices/a/other", "/v2/groups/requests"})
    EXPECT_EQ(match_route("POST", target).endpoint, Endpoint::not_found) << target;
}

TEST(RequestBody, FullRequest) {
  const auto r = parse_device_request(
      R"({"method":"put","path":"/a/b%2Fc","query":"?x=1&y=2","content_format":50,"payload":"{}",)"
      R"("confirmable":false,"timeout":"5s","queue_for":"1h"})");
  ASSERT_TRUE(r.value) << r.error;
  EXPECT_EQ(r.value->request.method, 3);
  EXPECT_EQ(r.value->request.uri_path, (std::vector<std::string>{"a", "b/c"}));
  EXPECT_EQ(r.value->request.uri_query, (std::vector<std::string>{"x=1", "y=2"}));
  EXPECT_EQ(r.value->request.content_format, 50);
  EXPECT_EQ(r.value->request.payload, "{}");
  EXPECT_FALSE(r.value->request.confirmable);
  EXPECT_EQ(r.value->timeout, 5s);
  EXPECT_EQ(r.value->queue_for, 1h);
}

TEST(RequestBody, Defaults) {
  const auto r = parse_device_request(R"({"method":"GET","path":"/"})");
  ASSERT_TRUE(r.value) << r.error;
  EXPECT_TRUE(r.value->request.confirmable);
  EXPECT_EQ(r.value->timeout, default_timeout);
  EXPECT_FALSE(r.value->queue_for);
  EXPECT_FALSE(r.value->request.content_format);
  EXPECT_TRUE(r.value->request.uri_path.empty());
  const auto ipatch = parse_device_request(R"({"method":"iPATCH","path":"/x","payload_b64":"AAH/"})");
  ASSERT_TRUE(ipatch.value) << ipatch.error;
  EXPECT_EQ(ipatch.value->request.method, 7);
  EXPECT_EQ(ipatch.value->request.payload, std::string("\x00\x01\xff", 3));
}

TEST(RequestBody, RefusalsNameTheMember) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "not valid JSON"},
      {"[1]", "JSON object"},
      {R"({"path":"/a"})", "\"method\" is required"},
      {R"({"method":"HEAD","path":"/a"})", "\"method\" must be"},
      {R"({"method":"GET"})", "\"path\" is required"},
      {R"({"method":"GET","path":"a"})", "start with '/'"},
      {R"({"method":"GET","path":"/a?b"})", "use \"query\""},
      {R"({"method":"GET","path":"/a/../b"})", "segments"},
      {R"({"method":"GET","path":1})", "\"path\" must be a string"},
      {R"({"method":"GET","path":"/a","content_format":70000})", "\"content_format\""},
      {R"({"method":"GET","path":"/a","content_format":-1})", "\"content_format\""},
      {R"({"method":"GET","path":"/a","payload":"x","payload_b64":"eA=="})", "not both"},
      {R"({"method":"GET","path":"/a","payload_b64":"e==="})", "base64"},
      {R"({"method":"GET","path":"/a","payload_b64":"eA"})", "base64"},
      {R"({"method":"GET","path":"/a","confirmable":"yes"})", "\"confirmable\""},
      {R"({"method":"GET","path":"/a","timeout":"30"})", "\"timeout\""},
      {R"({"method":"GET","path":"/a","timeout":"0s"})", "\"timeout\""},
      {R"({"method":"GET","path":"/a","timeout":"6m"})", "\"timeout\""},
      {R"({"method":"GET","path":"/a","queue_for":"200h"})", "\"queue_for\""},
      {R"({"method":"GET","path":"/a","colour":1})", "unknown member \"colour\""},
  };
  for (const auto& [body, part] : cases) {
    const auto r = parse_device_request(body);
    EXPECT_FALSE(r.value) << body;
    EXPECT_NE(r.error.find(part), std::string::npos) << body << " -> " << r.error;
  }
  EXPECT_FALSE(parse_device_request(R"({"method":"GET","path":"/)" + std::string(256, 'a') + "\"}").value);
  EXPECT_TRUE(parse_device_request(R"({"method":"GET","path":"/)" + std::string(255, 'a') + "\"}").value);
}

TEST(RequestBody, ObserveAndGroup) {
  const auto o = parse_observe_request(R"({"path":"/temp","notify":"http://127.0.0.1:8000/n"})");
  ASSERT_TRUE(o.value) << o.error;
  EXPECT_EQ(o.value->request.notify, "http://127.0.0.1:8000/n");
  EXPECT_FALSE(parse_observe_request(R"({"path":"/temp","notify":"ftp://x"})").value);
  EXPECT_FALSE(parse_observe_request(R"({"path":"/temp"})").value);

  const auto g = parse_group_request(R"({"group":"224.0.1.187:5683","method":"GET","path":"/x","wait":"1s"})");
  ASSERT_TRUE(g.value) << g.error;
  EXPECT_EQ(g.value->group.to_string(), "224.0.1.187:5683");
  EXPECT_EQ(g.value->wait, 1s);
  EXPECT_FALSE(g.value->request.confirmable);
  EXPECT_TRUE(parse_group_request(R"({"group":"[ff02::fd]:5683","method":"GET","path":"/x"})").value);
  EXPECT_FALSE(parse_group_request(R"({"group":"127.0.0.1:5683","method":"GET","path":"/x"})").value);
  EXPECT_FALSE(parse_group_request(R"({"group":"224.0.1.187:5683","method":"GET","path":"/x","confirmable":true})").value);
  EXPECT_FALSE(parse_group_request(R"({"group":"224.0.1.187:5683","method":"GET","path":"/x","wait":"2m"})").value);
}

TEST(Base64, RoundTrip) {
  for (std::string s : {std::string(), std::string("f"), std::string("fo"), std::string("foo"), std::string("\0\xff\x10", 3)})
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
}

TEST(Answers, TextOrBase64Payload) {
  DownlinkAnswer a;
  a.code = 69;
  a.content_format = 0;
  a.payload = "21.5";
  a.session = 9;
  a.remote = *Address::parse("[::1]:5684");
  auto j = json::parse(render_answer(a));
  EXPECT_EQ(j["code"], "2.05");
  EXPECT_EQ(j["content_format"], 0);
  EXPECT_EQ(j["payload"], "21.5");
  EXPECT_EQ(j["session"], 9);
  EXPECT_EQ(j["remote"], "[::1]:5684");
  a.payload = std::string("\xff\x00", 2);
  a.content_format.reset();
  j = json::parse(render_answer(a));
  EXPECT_FALSE(j.contains("payload"));
  EXPECT_EQ(j["payload_b64"], "/wA=");
  EXPECT_TRUE(j["content_format"].is_null());
  EXPECT_EQ(code_text(132), "4.04");
  EXPECT_EQ(code_text(160), "5.00");
}

}  // namespace
}  // namespace coapgw::api
