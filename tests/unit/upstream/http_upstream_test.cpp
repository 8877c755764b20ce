// HTTP/HTTPS forwarding against a real server on loopback (test_http_server).
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdlib>
#include <fstream>

#include "upstream/http_upstream.hpp"
#include "upstream/router.hpp"
#include "test_http_server.hpp"
#include "test_util.hpp"

namespace coapgw::upstream {
namespace {

using test::bytes;
using test::text;

class HttpForwardTest : public ::testing::Test {
 protected:
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }

  RouteSpec api_route(std::string upstream, bool strip = true) {
    RouteSpec r;
    r.prefix = "/api";
    r.upstream = std::move(upstream);
    r.strip_prefix = strip;
    r.timeout = std::chrono::seconds(10);
    return r;
  }

  static ForwardRequest get(std::string path) {
    ForwardRequest r;
    r.method = "GET";
    r.path = std::move(path);
    r.remote = "127.0.0.1:40000";
    r.session_id = 1;
    return r;
  }

  // Forwards through the router and drives io_ until the answer arrives.
  ForwardResponse forward(Router& router, ForwardRequest r) {
    test::Slot slot;
    auto m = router.match(r.path);
    EXPECT_TRUE(m) << r.path;
    if (!m) return {};
    router.forward(*m, std::move(r), slot.done());
    EXPECT_EQ(slot.calls, 0) << "done must not run inside forward()";
    EXPECT_TRUE(test::run_until(io_, [&] { return slot.response.has_value(); }));
    EXPECT_EQ(slot.calls, 1);
    return slot.response.value_or(ForwardResponse{});
  }

  boost::asio::io_context io_;
  test::TestHttpServer server_;
};

TEST_F(HttpForwardTest, PostArrivesWithMappedHeadersAnd201Becomes201) {
  Router router(io_, {api_route(base_url() + "/base")});
  ForwardRequest r;
  r.method = "POST";
  r.path = "/api/status/201";
  r.query = "a=1&b=x%20y";
  r.content_format = 50;
  r.accept = 60;
  r.payload = bytes("{\"t\":1}");
  r.identity = "dev-1";
  r.remote = "10.1.2.3:5683";
  r.session_id = 42;
  auto res = forward(router, r);
  EXPECT_EQ(res.code, coap_code(2, 1));
  EXPECT_EQ(res.outcome, Outcome::ok);

  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  const auto& got = reqs[0];
  EXPECT_EQ(got.method, "POST");
  EXPECT_EQ(got.target, "/base/status/201?a=1&b=x%20y");
  EXPECT_EQ(got.header("host"), "127.0.0.1:" + std::to_string(server_.port()));
  EXPECT_EQ(got.header("content-type"), "application/json");
  EXPECT_EQ(got.header("accept"), "application/cbor");
  EXPECT_EQ(got.header("x-device-identity"), "dev-1");
  EXPECT_EQ(got.header("x-forwarded-for"), "10.1.2.3");
  EXPECT_EQ(got.header("x-coap-session"), "42");
  EXPECT_EQ(got.header("content-length"), "7");
  EXPECT_EQ(got.body, "{\"t\":1}");
}

TEST_F(HttpForwardTest, PlainCoapGetHasNoIdentityAndJsonMapsToCf50) {
  Router router(io_, {api_route(base_url(), false)});
  ForwardRequest r = get("/api/json");
  r.remote = "[::1]:5683";
  auto res = forward(router, r);
  EXPECT_EQ(res.code, coap_code(2, 5));
  EXPECT_EQ(res.content_format, 50);
  EXPECT_EQ(text(res.payload), R"({"ok":true})");
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "/api/json");
  EXPECT_FALSE(reqs[0].has("x-device-identity"));
  EXPECT_FALSE(reqs[0].has("content-type"));
  EXPECT_EQ(reqs[0].header("x-forwarded-for"), "::1");
}

TEST_F(HttpForwardTest, StatusCodesAndMethodsMap) {
  Router router(io_, {api_route(base_url())});
  auto not_found = forward(router, get("/api/status/404"));
  EXPECT_EQ(not_found.code, coap_code(4, 4));
  EXPECT_EQ(not_found.outcome, Outcome::ok);
  auto unavailable = forward(router, get("/api/status/503"));
  EXPECT_EQ(unavailable.code, coap_code(5, 3));
  EXPECT_EQ(unavailable.outcome, Outcome::upstream_error);

  ForwardRequest fetch = get("/api/x");
  fetch.method = "FETCH";
  fetch.payload = bytes("q");
  EXPECT_EQ(forward(router, fetch).code, coap_code(2, 5));
  ForwardRequest ipatch = get("/api/x");
  ipatch.method = "IPATCH";
  EXPECT_EQ(forward(router, ipatch).code, coap_code(2, 4));
  ForwardRequest del = get("/api/x");
  del.method = "DELETE";
  EXPECT_EQ(forward(router, del).code, coap_code(2, 4));
  ForwardRequest odd = get("/api/x");
  odd.method = "TRACE";
  EXPECT_EQ(forward(router, odd).code, coap_code(5, 1));

  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 5u);
  EXPECT_EQ(reqs[2].method, "FETCH");
  EXPECT_EQ(reqs[2].body, "q");
  EXPECT_EQ(reqs[3].method, "iPATCH");
  EXPECT_EQ(reqs[4].method, "DELETE");
}

TEST_F(HttpForwardTest, UnsafeCharactersInPathAndIdentityAreEncoded) {
  Router router(io_, {api_route(base_url())});
  ForwardRequest r = get("/api/a b\r\nX-Evil: 1");
  r.identity = "id\r\nX-Evil: 1";
  EXPECT_EQ(forward(router, r).code, coap_code(2, 5));
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "/a%20b%0D%0AX-Evil:%201");
  EXPECT_EQ(reqs[0].header("x-device-identity"), "id%0D%0AX-Evil: 1");
  EXPECT_FALSE(reqs[0].has("x-evil"));
}

TEST_F(HttpForwardTest, SequentialRequestsReuseOneConnection) {
  Router router(io_, {api_route(base_url())});
  EXPECT_EQ(forward(router, get("/api/one")).code, coap_code(2, 5));
  EXPECT_EQ(forward(router, get("/api/two")).code, coap_code(2, 5));
  EXPECT_EQ(server_.requests().size(), 2u);
  EXPECT_EQ(server_.accepts(), 1u);
}

TEST_F(HttpForwardTest, IdleConnectionClosedByServerIsReplaced) {
  Router router(io_, {api_route(base_url())});
  EXPECT_EQ(forward(router, get("/api/drop")).code, coap_code(2, 5));
  auto second = forward(router, get("/api/after"));
  EXPECT_EQ(second.code, coap_code(2, 5));
  EXPECT_EQ(text(second.payload), "hello");
  EXPECT_EQ(server_.accepts(), 2u);
}

TEST_F(HttpForwardTest, UpstreamDownAnswers502) {
  std::uint16_t closed_port;
  {
    boost::asio::io_context tmp;
    boost::asio::ip::tcp::acceptor a(tmp, {boost::asio::ip::make_address("127.0.0.1"), 0});
    closed_port = a.local_endpoint().port();
  }
  Router router(io_, {api_route("http://127.0.0.1:" + std::to_string(closed_port))});
  auto res = forward(router, get("/api/x"));
  EXPECT_EQ(res.code, coap_code(5, 2));
  EXPECT_EQ(res.outcome, Outcome::connect_failed);
}

TEST_F(HttpForwardTest, SlowUpstreamAnswers504AndItsConnectionIsNotReused) {
  RouteSpec spec = api_route(base_url());
  spec.timeout = std::chrono::milliseconds(300);
  Router router(io_, {spec});
  auto res = forward(router, get("/api/slow"));
  EXPECT_EQ(res.code, coap_code(5, 4));
  EXPECT_EQ(res.outcome, Outcome::timeout);
  server_.release_slow();
  EXPECT_EQ(forward(router, get("/api/x")).code, coap_code(2, 5));
  EXPECT_EQ(server_.accepts(), 2u);
}

TEST_F(HttpForwardTest, UpstreamOwnTimeoutAlsoAnswers504) {
  RouteSpec spec = api_route(base_url());
  spec.timeout = std::chrono::milliseconds(300);
  auto upstream = make_http_upstream(io_, spec);
  test::Slot slot;
  upstream->forward(get("/slow"), slot.done());
  ASSERT_TRUE(test::run_until(io_, [&] { return slot.response.has_value(); }));
  EXPECT_EQ(slot.response->code, coap_code(5, 4));
  EXPECT_EQ(slot.response->outcome, Outcome::timeout);
  server_.release_slow();
}

TEST_F(HttpForwardTest, RouteConcurrencyBoundAnswers503WithMaxAge) {
  RouteSpec spec = api_route(base_url());
  spec.max_in_flight = 1;
  Router router(io_, {spec});
  test::Slot slow;
  router.forward(*router.match("/api/slow"), get("/api/slow"), slow.done());
  ASSERT_TRUE(test::run_until(io_, [&] { return server_.slow_waiting() == 1; }));

  auto rejected = forward(router, get("/api/x"));
  EXPECT_EQ(rejected.code, coap_code(5, 3));
  ASSERT_TRUE(rejected.max_age);
  EXPECT_EQ(*rejected.max_age, overloaded_max_age_s);
  EXPECT_EQ(rejected.outcome, Outcome::overloaded);
  EXPECT_FALSE(slow.response);

  server_.release_slow();
  ASSERT_TRUE(test::run_until(io_, [&] { return slow.response.has_value(); }));
  EXPECT_EQ(slow.response->code, coap_code(2, 5));
  // The slot is free again.
  EXPECT_EQ(forward(router, get("/api/y")).code, coap_code(2, 5));
}

TEST_F(HttpForwardTest, OversizedBodyIsBadResponse) {
  Router router(io_, {api_route(base_url())});
  auto res = forward(router, get("/api/big"));
  EXPECT_EQ(res.code, coap_code(5, 2));
  EXPECT_EQ(res.outcome, Outcome::bad_response);
  auto chunked = forward(router, get("/api/bigchunked"));
  EXPECT_EQ(chunked.code, coap_code(5, 2));
  EXPECT_EQ(chunked.outcome, Outcome::bad_response);
}

TEST_F(HttpForwardTest, ShutdownAnswersRequestsInFlight) {
  Router router(io_, {api_route(base_url())});
  test::Slot slow;
  router.forward(*router.match("/api/slow"), get("/api/slow"), slow.done());
  ASSERT_TRUE(test::run_until(io_, [&] { return server_.slow_waiting() == 1; }));
  router.shutdown();
  ASSERT_TRUE(test::run_until(io_, [&] { return slow.response.has_value(); }));
  EXPECT_EQ(slow.response->code, coap_code(5, 2));
  EXPECT_EQ(slow.calls, 1);
  server_.release_slow();
}

std::vector<std::byte> opt_value(const ForwardResponse& r, std::uint16_t number, std::size_t nth = 0) {
  for (auto& [n, v] : r.options)
    if (n == number && nth-- == 0) return v;
  return {};
}
std::size_t opt_count(const ForwardResponse& r, std::uint16_t number) {
  std::size_t n = 0;
  for (auto& o : r.options) n += o.first == number;
  return n;
}
constexpr std::uint16_t opt_etag = 4, opt_location_path = 8, opt_location_query = 20;

TEST_F(HttpForwardTest, ConditionalOptionsBecomeRfc8075Headers) {
  Router router(io_, {api_route(base_url())});
  ForwardRequest put = get("/api/x");
  put.method = "PUT";
  put.if_match = {bytes("\x01\x02"), bytes("v1")};
  forward(router, put);
  put.if_match = {bytes("\x01"), {}};
  forward(router, put);
  put.if_match.clear();
  put.if_none_match = true;
  forward(router, put);
  ForwardRequest cond = get("/api/x");
  cond.etags = {bytes("\x0a\x0b"), bytes("\x0c")};
  forward(router, cond);
  ForwardRequest post = get("/api/x");  // ETag options only make a GET/FETCH conditional
  post.method = "POST";
  post.etags = {bytes("\x0a")};
  forward(router, post);
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 5u);
  EXPECT_EQ(reqs[0].header("if-match"), "\"0102\", \"7631\", \"v1\"");
  EXPECT_EQ(reqs[1].header("if-match"), "*");
  EXPECT_FALSE(reqs[2].has("if-match"));
  EXPECT_EQ(reqs[2].header("if-none-match"), "*");
  EXPECT_EQ(reqs[3].header("if-none-match"), "\"0a0b\", \"0c\"");
  EXPECT_FALSE(reqs[4].has("if-none-match"));
}

TEST_F(HttpForwardTest, AcceptWithoutMediaTypeIsRefused) {
  Router router(io_, {api_route(base_url())});
  ForwardRequest r = get("/api/x");
  r.accept = 65000;  // no media type: cannot be asked of an HTTP server
  EXPECT_EQ(forward(router, r).code, coap_code(4, 6));
  EXPECT_TRUE(server_.requests().empty());
}

TEST_F(HttpForwardTest, LocationTooLongForTheRouteIsLeftOut) {
  Router router(io_, {api_route(base_url())});  // strip_prefix: "api" goes back in front
  ForwardRequest r = get("/api/answer");
  r.method = "POST";
  r.query = "status=201&Location=/1/2/3/4/5/6/7/8";
  auto res = forward(router, r);
  EXPECT_EQ(res.code, coap_code(2, 1));
  EXPECT_EQ(opt_count(res, opt_location_path), 0u);
}

TEST_F(HttpForwardTest, PreconditionFailedIs412) {
  Router router(io_, {api_route(base_url())});
  ForwardRequest put = get("/api/status/412");
  put.method = "PUT";
  put.if_none_match = true;
  EXPECT_EQ(forward(router, put).code, coap_code(4, 12));
}

TEST_F(HttpForwardTest, EtagAndCacheControlComeBackAsOptions) {
  Router router(io_, {api_route(base_url())});
  ForwardRequest r = get("/api/answer");
  r.query = "ETag=%22abc0%22&Cache-Control=public,%20max-age%3D30";
  auto res = forward(router, r);
  EXPECT_EQ(res.code, coap_code(2, 5));
  EXPECT_EQ(opt_value(res, opt_etag), bytes("\xab\xc0"));
  EXPECT_EQ(res.max_age, 30u);
}

TEST_F(HttpForwardTest, NotModifiedIsValidWithTheEtag) {
  Router router(io_, {api_route(base_url())});
  ForwardRequest r = get("/api/answer");
  r.query = "status=304&ETag=%220a%22";
  r.etags = {bytes("\x0a")};
  auto res = forward(router, r);
  EXPECT_EQ(res.code, coap_code(2, 3));
  EXPECT_EQ(opt_value(res, opt_etag), bytes("\x0a"));
  EXPECT_TRUE(res.payload.empty());
  // A bare 304 validates the one ETag the device named.
  r.query = "status=304";
  r.etags = {bytes("\x0b")};
  res = forward(router, r);
  EXPECT_EQ(res.code, coap_code(2, 3));
  EXPECT_EQ(opt_value(res, opt_etag), bytes("\x0b"));
}

TEST_F(HttpForwardTest, RetryAfterOn503BecomesMaxAge) {
  Router router(io_, {api_route(base_url())});
  ForwardRequest r = get("/api/answer");
  r.query = "status=503&Retry-After=17";
  auto res = forward(router, r);
  EXPECT_EQ(res.code, coap_code(5, 3));
  EXPECT_EQ(res.max_age, 17u);
}

TEST_F(HttpForwardTest, CreatedLocationBecomesLocationOptionsUnderTheRoute) {
  Router router(io_, {api_route(base_url() + "/base")});  // strip_prefix: /api/x -> /base/x
  ForwardRequest r = get("/api/answer");
  r.method = "POST";
  r.query = "status=201&Location=/base/items/7%3Fx%3D1%26y%3D%2526";
  auto res = forward(router, r);
  EXPECT_EQ(res.code, coap_code(2, 1));
  ASSERT_EQ(opt_count(res, opt_location_path), 3u);
  EXPECT_EQ(opt_value(res, opt_location_path, 0), bytes("api"));
  EXPECT_EQ(opt_value(res, opt_location_path, 1), bytes("items"));
  EXPECT_EQ(opt_value(res, opt_location_path, 2), bytes("7"));
  ASSERT_EQ(opt_count(res, opt_location_query), 2u);
  EXPECT_EQ(opt_value(res, opt_location_query, 0), bytes("x=1"));
  EXPECT_EQ(opt_value(res, opt_location_query, 1), bytes("y=&"));
}

TEST_F(HttpForwardTest, EncodedSegmentsStayEncoded) {
  Router router(io_, {api_route(base_url())});
  ForwardRequest r = get("/api/a%2Fb/c%3Fd/%25");
  r.query = "k=a%26b";
  forward(router, r);
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "/a%2Fb/c%3Fd/%25?k=a%26b");
}

// A test CA and two server certificates, made with the openssl CLI once.
class HttpsForwardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const std::string d = dir_->path.string();
    {
      std::ofstream(d + "/good.cnf") << "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n";
      std::ofstream(d + "/wrong.cnf") << "subjectAltName=IP:127.0.0.2\nbasicConstraints=CA:FALSE\n";
    }
    const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
    std::string cmd = "cd " + d + " && openssl req -x509" + key +
                      "-keyout ca.key -out ca.pem -days 2 -subj /CN=coapgw-test-ca";
    for (const char* name : {"good", "wrong"}) {
      const std::string n = name;
      cmd += " && openssl req -new" + key + "-keyout " + n + ".key -out " + n + ".csr -subj /CN=" + n +
             " && openssl x509 -req -in " + n + ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -out " + n +
             ".pem -days 2 -extfile " + n + ".cnf";
    }
    cmd = "(" + cmd + ") >/dev/null 2>&1";
    ok_ = std::system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!ok_) GTEST_FAIL() << "openssl could not create the test CA";
  }
  static std::unique_ptr<boost::asio::ssl::context> server_context(const std::string& name) {
    auto ctx = std::make_unique<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
    ctx->use_certificate_chain_file((dir_->path / (name + ".pem")).string());
    ctx->use_private_key_file((dir_->path / (name + ".key")).string(), boost::asio::ssl::context::pem);
    return ctx;
  }
  ForwardResponse forward_once(std::uint16_t port, std::string ca_file) {
    RouteSpec spec;
    spec.prefix = "/api";
    spec.upstream = "https://127.0.0.1:" + std::to_string(port);
    spec.ca_file = std::move(ca_file);
    Router router(io_, {spec});
    ForwardRequest r;
    r.method = "GET";
    r.path = "/api/json";
    r.remote = "127.0.0.1:1";
    r.identity = "tls-dev";
    test::Slot slot;
    router.forward(*router.match(r.path), r, slot.done());
    EXPECT_TRUE(test::run_until(io_, [&] { return slot.response.has_value(); }));
    return slot.response.value_or(ForwardResponse{});
  }
  std::string ca_file() const { return (dir_->path / "ca.pem").string(); }

  static inline test::TempDir* dir_ = nullptr;
  static inline bool ok_ = false;
  boost::asio::io_context io_;
};

TEST_F(HttpsForwardTest, VerifiesAgainstConfiguredCa) {
  auto ctx = server_context("good");
  test::TestHttpServer server(ctx.get());
  auto res = forward_once(server.port(), ca_file());
  EXPECT_EQ(res.code, coap_code(2, 5));
  EXPECT_EQ(res.outcome, Outcome::ok);
  EXPECT_EQ(res.content_format, 50);
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].header("x-device-identity"), "tls-dev");
}

TEST_F(HttpsForwardTest, RefusesWithoutTheCa) {
  auto ctx = server_context("good");
  test::TestHttpServer server(ctx.get());
  auto res = forward_once(server.port(), "");
  EXPECT_EQ(res.code, coap_code(5, 2));
  EXPECT_EQ(res.outcome, Outcome::connect_failed);
  EXPECT_TRUE(server.requests().empty());
}

TEST_F(HttpsForwardTest, RefusesACertificateForAnotherHost) {
  auto ctx = server_context("wrong");
  test::TestHttpServer server(ctx.get());
  auto res = forward_once(server.port(), ca_file());
  EXPECT_EQ(res.code, coap_code(5, 2));
  EXPECT_EQ(res.outcome, Outcome::connect_failed);
  EXPECT_TRUE(server.requests().empty());
}

}  // namespace
}  // namespace coapgw::upstream
