#include "server/request_target.hpp"

#include <gtest/gtest.h>

#include "coap/option.hpp"

namespace coapgw::server {
namespace {

using coap::option::etag;
using coap::option::if_match;
using coap::option::if_none_match;
using coap::option::proxy_scheme;
using coap::option::proxy_uri;
using coap::option::uri_host;
using coap::option::uri_path;
using coap::option::uri_port;

struct Built {
  std::vector<std::byte> wire;
  coap::MessageView view;
};

// The request's options as (number, text); the view points into `wire`, hence the holder.
std::unique_ptr<Built> request(std::initializer_list<std::pair<std::uint16_t, std::string_view>> options) {
  coap::Message m;
  m.type = coap::Type::con;
  m.code = coap::code::get;
  for (auto& [n, v] : options) m.add_string_option(n, v);
  auto b = std::make_unique<Built>();
  b->wire = coap::serialize(m);
  EXPECT_EQ(coap::parse(b->wire, b->view), coap::ParseError::ok);
  return b;
}

std::optional<std::string_view> reason(std::initializer_list<std::pair<std::uint16_t, std::string_view>> options,
                                       const Address& local) {
  auto b = request(options);
  auto r = check_request_target(b->view, local);
  if (!r) return std::nullopt;
  return metrics::name(r->reason);
}

const Address local4 = *Address::parse("127.0.0.1:5683");
const Address local6 = *Address::parse("[::1]:5683");

TEST(RequestTarget, PlainRequestPasses) {
  EXPECT_EQ(reason({{uri_path, "api"}, {uri_path, "x"}}, local4), std::nullopt);
}

TEST(RequestTarget, ProxyOptionsAre505) {
  auto b = request({{proxy_uri, "coap://example.com/x"}});
  auto r = check_request_target(b->view, local4);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, coap::code::proxying_not_supported);
  EXPECT_EQ(reason({{uri_path, "api"}, {proxy_scheme, "http"}}, local4), "proxy_unsupported");
}

TEST(RequestTarget, UriHostMustBeOurAddressOrAName) {
  EXPECT_EQ(reason({{uri_host, "127.0.0.1"}}, local4), std::nullopt);
  EXPECT_EQ(reason({{uri_host, "gw.example"}}, local4), std::nullopt);
  EXPECT_EQ(reason({{uri_host, "1.2.3"}}, local4), std::nullopt);  // not an IPv4 literal: a name
  EXPECT_EQ(reason({{uri_host, "127.0.0.2"}}, local4), "wrong_authority");
  EXPECT_EQ(reason({{uri_host, "::1"}}, local4), "wrong_authority");
  EXPECT_EQ(reason({{uri_host, "::1"}}, local6), std::nullopt);
  EXPECT_EQ(reason({{uri_host, "[::1]"}}, local6), std::nullopt);
  EXPECT_EQ(reason({{uri_host, "::2"}}, local6), "wrong_authority");
  EXPECT_EQ(reason({{uri_host, "::zz"}}, local6), "wrong_authority");
  // Unknown local address (not reported by the socket): any host is taken to be us.
  EXPECT_EQ(reason({{uri_host, "10.0.0.1"}}, Address{}), std::nullopt);
}

TEST(RequestTarget, UriPortMustBeOurPort) {
  auto with_port = [](std::uint32_t port, const Address& local) {
    coap::Message m;
    m.code = coap::code::get;
    m.add_uint_option(uri_port, port);
    auto wire = coap::serialize(m);
    coap::MessageView v;
    EXPECT_EQ(coap::parse(wire, v), coap::ParseError::ok);
    auto r = check_request_target(v, local);
    return r ? metrics::name(r->reason) : std::string_view{};
  };
  EXPECT_EQ(with_port(5683, local4), "");
  EXPECT_EQ(with_port(5684, local4), "wrong_authority");
  EXPECT_EQ(with_port(0, local4), "wrong_authority");
}

TEST(RequestTarget, DotSegmentsAre400) {
  auto b = request({{uri_path, "api"}, {uri_path, "%2E%2E"}});
  auto r = check_request_target(b->view, local4);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, coap::code::bad_request);
  EXPECT_EQ(r->reason, metrics::BadReason::bad_path);
}

TEST(RequestTarget, ConditionalsAreCopied) {
  auto b = request({{if_match, ""}, {if_match, "\x01\x02"}, {etag, "ab"}, {if_none_match, ""}});
  upstream::ForwardRequest req;
  copy_conditionals(b->view, req);
  ASSERT_EQ(req.if_match.size(), 2u);
  EXPECT_TRUE(req.if_match[0].empty());
  EXPECT_EQ(req.if_match[1], (std::vector<std::byte>{std::byte{1}, std::byte{2}}));
  EXPECT_TRUE(req.if_none_match);
  ASSERT_EQ(req.etags.size(), 1u);
  EXPECT_EQ(req.etags[0], (std::vector<std::byte>{std::byte{'a'}, std::byte{'b'}}));
}

}  // namespace
}  // namespace coapgw::server
