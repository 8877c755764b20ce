#include "upstream/mapping.hpp"

#include <gtest/gtest.h>

#include "upstream/forward.hpp"
#include "upstream/http_upstream.hpp"

namespace coapgw::upstream {
namespace {

TEST(ContentFormat, KnownFormatsMapToMediaTypes) {
  EXPECT_EQ(content_format_to_media_type(0), "text/plain;charset=utf-8");
  EXPECT_EQ(content_format_to_media_type(40), "application/link-format");
  EXPECT_EQ(content_format_to_media_type(41), "application/xml");
  EXPECT_EQ(content_format_to_media_type(42), "application/octet-stream");
  EXPECT_EQ(content_format_to_media_type(47), "application/exi");
  EXPECT_EQ(content_format_to_media_type(50), "application/json");
  EXPECT_EQ(content_format_to_media_type(60), "application/cbor");
  EXPECT_EQ(content_format_to_media_type(110), "application/senml+json");
  EXPECT_EQ(content_format_to_media_type(112), "application/senml+cbor");
  EXPECT_FALSE(content_format_to_media_type(1));
  EXPECT_FALSE(content_format_to_media_type(65000));
}

TEST(ContentFormat, MediaTypesMapBackIgnoringParameters) {
  EXPECT_EQ(media_type_to_content_format("application/json"), 50);
  EXPECT_EQ(media_type_to_content_format("Application/JSON; charset=utf-8"), 50);
  EXPECT_EQ(media_type_to_content_format(" application/cbor "), 60);
  EXPECT_EQ(media_type_to_content_format("application/senml+json"), 110);
  EXPECT_EQ(media_type_to_content_format("application/link-format"), 40);
  EXPECT_FALSE(media_type_to_content_format("text/html"));
  EXPECT_FALSE(media_type_to_content_format(""));
}

TEST(ContentFormat, TextPlainNeedsUtf8CompatibleCharset) {
  EXPECT_EQ(media_type_to_content_format("text/plain"), 0);
  EXPECT_EQ(media_type_to_content_format("text/plain;charset=utf-8"), 0);
  EXPECT_EQ(media_type_to_content_format("text/plain; charset=\"UTF-8\""), 0);
  EXPECT_EQ(media_type_to_content_format("text/plain; charset=us-ascii"), 0);
  EXPECT_FALSE(media_type_to_content_format("text/plain; charset=iso-8859-1"));
}

TEST(ContentFormat, EveryForwardEntryRoundTrips) {
  for (std::uint16_t cf : {0, 40, 41, 42, 47, 50, 51, 52, 60, 61, 62, 63, 110, 111, 112, 113, 114,
                           115, 256, 310, 311, 320, 322, 432, 11542, 11543, 11544}) {
    auto mt = content_format_to_media_type(cf);
    ASSERT_TRUE(mt) << cf;
    EXPECT_EQ(media_type_to_content_format(*mt), cf) << *mt;
  }
}

TEST(HttpStatus, MapsPerDesignTable) {
  EXPECT_EQ(http_status_to_coap(200, "GET"), coap_code(2, 5));
  EXPECT_EQ(http_status_to_coap(200, "FETCH"), coap_code(2, 5));
  EXPECT_EQ(http_status_to_coap(200, "POST"), coap_code(2, 4));
  EXPECT_EQ(http_status_to_coap(200, "PUT"), coap_code(2, 4));
  EXPECT_EQ(http_status_to_coap(201, "POST"), coap_code(2, 1));
  EXPECT_EQ(http_status_to_coap(204, "DELETE"), coap_code(2, 4));
  EXPECT_EQ(http_status_to_coap(202, "POST"), coap_code(2, 4));
  EXPECT_EQ(http_status_to_coap(304, "GET"), coap_code(2, 3));
  EXPECT_EQ(http_status_to_coap(301, "GET"), coap_code(5, 2));
  EXPECT_EQ(http_status_to_coap(400, "GET"), coap_code(4, 0));
  EXPECT_EQ(http_status_to_coap(401, "GET"), coap_code(4, 1));
  EXPECT_EQ(http_status_to_coap(403, "GET"), coap_code(4, 3));
  EXPECT_EQ(http_status_to_coap(404, "GET"), coap_code(4, 4));
  EXPECT_EQ(http_status_to_coap(405, "GET"), coap_code(4, 5));
  EXPECT_EQ(http_status_to_coap(406, "GET"), coap_code(4, 6));
  EXPECT_EQ(http_status_to_coap(412, "GET"), coap_code(4, 12));
  EXPECT_EQ(http_status_to_coap(413, "POST"), coap_code(4, 13));
  EXPECT_EQ(http_status_to_coap(415, "POST"), coap_code(4, 15));
  EXPECT_EQ(http_status_to_coap(418, "GET"), coap_code(4, 0));
  EXPECT_EQ(http_status_to_coap(500, "GET"), coap_code(5, 0));
  EXPECT_EQ(http_status_to_coap(501, "GET"), coap_code(5, 1));
  EXPECT_EQ(http_status_to_coap(502, "GET"), coap_code(5, 2));
  EXPECT_EQ(http_status_to_coap(503, "GET"), coap_code(5, 3));
  EXPECT_EQ(http_status_to_coap(504, "GET"), coap_code(5, 4));
  EXPECT_EQ(http_status_to_coap(599, "GET"), coap_code(5, 0));
  EXPECT_EQ(http_status_to_coap(101, "GET"), coap_code(5, 2));
}

TEST(HttpTarget, ParsesUpstreamUrls) {
  auto t = parse_http_target("http://127.0.0.1:8000");
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->tls);
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, "8000");
  EXPECT_EQ(t->base_path, "");
  EXPECT_EQ(t->host_header, "127.0.0.1:8000");

  t = parse_http_target("https://backend.example/v1/");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->tls);
  EXPECT_EQ(t->port, "443");
  EXPECT_EQ(t->base_path, "/v1");
  EXPECT_EQ(t->host_header, "backend.example");

  t = parse_http_target("http://[::1]:8080/x");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->host_header, "[::1]:8080");

  EXPECT_FALSE(parse_http_target("ftp://x"));
  EXPECT_FALSE(parse_http_target("http://"));
  EXPECT_FALSE(parse_http_target("http://host:0"));
  EXPECT_FALSE(parse_http_target("http://host:70000"));
  EXPECT_FALSE(parse_http_target("http://host:8x"));
  EXPECT_FALSE(parse_http_target("http://host:"));
  EXPECT_FALSE(parse_http_target("http://host/a?b"));
  EXPECT_FALSE(parse_http_target("http://user@host/"));
}

std::vector<std::byte> raw(std::string_view s) {
  auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

TEST(EntityTags, HttpToCoap) {
  EXPECT_EQ(http_etag_to_coap("\"0a0b0c\""), raw("\x0a\x0b\x0c"));
  EXPECT_EQ(http_etag_to_coap(" W/\"v1\" "), raw("v1"));
  EXPECT_EQ(http_etag_to_coap("\"0A0B\""), raw("0A0B"));  // upper case: taken as is
  EXPECT_EQ(http_etag_to_coap("\"0123456789abcdef\""), raw("\x01\x23\x45\x67\x89\xab\xcd\xef"));
  // Longer than 8 bytes: the first 8 bytes of SHA-256, the same every time.
  auto long_tag = http_etag_to_coap("\"this-etag-is-longer-than-eight-bytes\"");
  ASSERT_TRUE(long_tag);
  EXPECT_EQ(long_tag->size(), 8u);
  EXPECT_EQ(long_tag, http_etag_to_coap("W/\"this-etag-is-longer-than-eight-bytes\""));
  EXPECT_NE(long_tag, http_etag_to_coap("\"this-etag-is-longer-than-eight-bytez\""));
  EXPECT_EQ(http_etag_to_coap("\"\"")->size(), 8u);
  EXPECT_FALSE(http_etag_to_coap("v1"));       // not quoted
  EXPECT_FALSE(http_etag_to_coap("\"a b\""));  // space is not an etagc
}

TEST(EntityTags, CoapToHttpRoundTrips) {
  EXPECT_EQ(etag_to_http(raw("\x01\x02")), "\"0102\"");
  EXPECT_EQ(etag_to_http(raw("v1")), "\"7631\", \"v1\"");
  EXPECT_EQ(etag_to_http(raw("ab")), "\"6162\"");  // "ab" would read as hex 0xab
  for (std::string_view header : {"\"0a0b0c\"", "\"v1\"", "\"0A0B\"", "\"x\""}) {
    auto coap = http_etag_to_coap(header);
    ASSERT_TRUE(coap) << header;
    EXPECT_NE(etag_to_http(*coap).find(header), std::string::npos) << header;
  }
  std::vector<std::vector<std::byte>> values{raw("\x01"), raw("\xff\xee")};
  EXPECT_EQ(if_match_to_http(values), "\"01\", \"ffee\"");
  values.push_back({});
  EXPECT_EQ(if_match_to_http(values), "*");
  EXPECT_EQ(etags_to_if_none_match(std::vector<std::vector<std::byte>>{raw("\x0a"), raw("\x0b")}), "\"0a\", \"0b\"");
}

TEST(Freshness, CacheControlAndRetryAfter) {
  EXPECT_EQ(cache_control_max_age("max-age=30"), 30u);
  EXPECT_EQ(cache_control_max_age("public, Max-Age=\"45\""), 45u);
  EXPECT_EQ(cache_control_max_age("max-age=99999999999"), 4294967295u);
  EXPECT_EQ(cache_control_max_age("no-store"), 0u);
  EXPECT_EQ(cache_control_max_age("max-age=30, no-cache"), 0u);
  EXPECT_FALSE(cache_control_max_age("public"));
  EXPECT_FALSE(cache_control_max_age("max-age=x"));
  EXPECT_EQ(retry_after_seconds("17"), 17u);
  EXPECT_EQ(retry_after_seconds(" 0 "), 0u);
  EXPECT_FALSE(retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"));
  EXPECT_FALSE(retry_after_seconds("-1"));
}

TEST(Location, PathAndQueryBecomeOptions) {
  auto l = location_to_options("http://h:8000/v1/items/7?x=1&y=%26#frag", "/v1");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->path, (std::vector<std::string>{"items", "7"}));
  EXPECT_EQ(l->query, (std::vector<std::string>{"x=1", "y=&"}));
  l = location_to_options("/api/a%2Fb", "");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->path, (std::vector<std::string>{"api", "a/b"}));
  EXPECT_TRUE(l->query.empty());
  l = location_to_options("/v1x/y", "/v1");  // not under the base path: kept whole
  ASSERT_TRUE(l);
  EXPECT_EQ(l->path, (std::vector<std::string>{"v1x", "y"}));
  l = location_to_options("https://h", "");
  ASSERT_TRUE(l);
  EXPECT_TRUE(l->path.empty());
  EXPECT_FALSE(location_to_options("items/7", ""));       // relative reference
  EXPECT_FALSE(location_to_options("//other/x", ""));     // network-path reference
  EXPECT_FALSE(location_to_options("/a/%2e%2e/b", ""));   // dot-segment
  EXPECT_FALSE(location_to_options("/1/2/3/4/5/6/7/8/9", ""));
  EXPECT_FALSE(location_to_options("/" + std::string(256, 'a'), ""));
}

}  // namespace
}  // namespace coapgw::upstream
