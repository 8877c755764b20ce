#include "common/url.hpp"

#include <gtest/gtest.h>

namespace coapgw::url {
namespace {

TEST(PercentEncode, SegmentKeepsPcharOnly) {
  EXPECT_EQ(percent_encode_segment("ok-._~!$&'()*+,;=:@"), "ok-._~!$&'()*+,;=:@");
  EXPECT_EQ(percent_encode_segment("a/b?c#d%e f"), "a%2Fb%3Fc%23d%25e%20f");
  EXPECT_EQ(percent_encode_segment(std::string("\0\r\n", 3)), "%00%0D%0A");
  EXPECT_EQ(percent_encode_segment("\xc3\xa9"), "%C3%A9");
  EXPECT_EQ(percent_encode_segment(""), "");
}

TEST(PercentEncode, QueryKeepsSlashAndQuestionButNotAmpersand) {
  EXPECT_EQ(percent_encode_query("k=a/b?c"), "k=a/b?c");
  EXPECT_EQ(percent_encode_query("k=a&b#c%d"), "k=a%26b%23c%25d");
  EXPECT_EQ(percent_encode_query("sp ace"), "sp%20ace");
}

TEST(PercentEncode, TargetKeepsEscapesAndDelimiters) {
  EXPECT_EQ(percent_encode_target("/a%2Fb/c?x=1&y=%26"), "/a%2Fb/c?x=1&y=%26");
  EXPECT_EQ(percent_encode_target("/a b\r\n\"<>"), "/a%20b%0D%0A%22%3C%3E");
}

TEST(PercentEncode, ControlsAndLinkTargets) {
  EXPECT_EQ(percent_encode_controls("dev 1\r\nX: y\x7f"), "dev 1%0D%0AX: y%7F");
  EXPECT_EQ(percent_encode_link_target("/a b<\">"), "/a%20b%3C%22%3E");
}

TEST(PercentDecode, DecodesAndKeepsMalformedEscapes) {
  EXPECT_EQ(percent_decode("a%2Fb%2fc"), "a/b/c");
  EXPECT_EQ(percent_decode("50%"), "50%");
  EXPECT_EQ(percent_decode("%4"), "%4");
  EXPECT_EQ(percent_decode("%zz%41"), "%zzA");
  EXPECT_EQ(percent_decode("%252e"), "%2e");
}

TEST(PercentCoding, RoundTripsEveryByte) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  EXPECT_EQ(percent_decode(percent_encode_segment(all)), all);
  EXPECT_EQ(percent_decode(percent_encode_query(all)), all);
  EXPECT_EQ(percent_encode_segment(all).find('/'), std::string::npos);
  EXPECT_EQ(percent_encode_query(all).find('&'), std::string::npos);
}

TEST(Split, PathAndQuery) {
  EXPECT_EQ(split_path("/a/b%2Fc//d"), (std::vector<std::string>{"a", "b/c", "d"}));
  EXPECT_TRUE(split_path("/").empty());
  EXPECT_EQ(split_query("a=1&b=%26&&c"), (std::vector<std::string>{"a=1", "b=&", "", "c"}));
  EXPECT_TRUE(split_query("").empty());
}

TEST(DotSegments, EveryDisguiseIsCaught) {
  for (const char* s : {".", "..", "%2e", "%2E%2e", ".%2E", "%252e%252e", "%25252e.", "../x", "x/..",
                        "a/./b", "..\\x", "x%2f..", "x%5c..%5cy",
                        // Path parameters and trailing blanks that servers set aside, dots only.
                        "..;", "..;/admin", ".;x", "%2e%2e;jsessionid=1", ".. ", "..%20", ". \t", "...",
                        "%2e%2e%2e", "x/...;y"}) {
    EXPECT_TRUE(is_dot_segment_risk(s)) << s;
  }
  for (const char* s : {"", "a.b", ".hidden", "..x", "x..", "a/b", "%2e%41", "v1.2", "a;b", "..a;"}) {
    EXPECT_FALSE(is_dot_segment_risk(s)) << s;
  }
}

TEST(ServerUrl, SplitsSchemeHostPortAndPath) {
  auto u = parse_server_url("http://127.0.0.1:8000/v1/a%20b/");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_FALSE(u->bracketed);
  EXPECT_EQ(u->port, 8000);
  EXPECT_EQ(u->path, "/v1/a%20b/");  // as written: callers decode or trim

  u = parse_server_url("coaps://[fe80::1]");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "coaps");
  EXPECT_EQ(u->host, "fe80::1");
  EXPECT_TRUE(u->bracketed);
  EXPECT_EQ(u->port, std::nullopt);
  EXPECT_EQ(u->path, "");

  u = parse_server_url("coap://[::1]:65535/");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 65535);
  EXPECT_EQ(u->path, "/");
  EXPECT_EQ(parse_server_url("x://h:1")->port, 1);  // schemes are the caller's to check
}

TEST(ServerUrl, RefusesMalformed) {
  for (const char* bad : {"", "host:80", "://h", "http://", "http:///p", "http://:80", "http://[]", "http://[::1",
                          "http://[::1]x", "http://[::1]:", "http://h:", "http://h:0", "http://h:65536",
                          "http://h:8x", "http://h:+80", "http://h:000080", "http://h:1:2", "http://u@h/",
                          "http://h/a?b", "http://h/a#f", "http://h?x", "http://h /a", "http://h/a\tb",
                          "http://h/\r\n"}) {
    EXPECT_EQ(parse_server_url(bad), std::nullopt) << bad;
  }
}

TEST(ServerUrl, SchemeOf) {
  EXPECT_EQ(scheme_of("coaps://h"), "coaps");
  EXPECT_EQ(scheme_of("file:x"), "");
  EXPECT_EQ(scheme_of("://h"), "");
}

}  // namespace
}  // namespace coapgw::url
