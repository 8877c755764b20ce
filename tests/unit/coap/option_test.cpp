// Option registry, option-number bits, first_bad_critical_option, URI rebuild.
#include <gtest/gtest.h>

#include "bytes.hpp"
#include "coap/option.hpp"

namespace coapgw::coap {
namespace {

using test::bytes;
using test::filled;

struct Expected {
  std::uint16_t number;
  std::string_view name;
  OptionFormat format;
  bool repeatable;
  std::uint16_t min_length;
  std::uint16_t max_length;
};

// Straight from the RFC tables (7252 §5.10, 7641 §2, 7959 §2.1 and §4, 7967 §2, 9175 §2.2 and §3.2).
constexpr Expected expected_registry[] = {
    {1, "If-Match", OptionFormat::opaque, true, 0, 8},
    {3, "Uri-Host", OptionFormat::string, false, 1, 255},
    {4, "ETag", OptionFormat::opaque, true, 1, 8},
    {5, "If-None-Match", OptionFormat::empty, false, 0, 0},
    {6, "Observe", OptionFormat::uint, false, 0, 3},
    {7, "Uri-Port", OptionFormat::uint, false, 0, 2},
    {8, "Location-Path", OptionFormat::string, true, 0, 255},
    {11, "Uri-Path", OptionFormat::string, true, 0, 255},
    {12, "Content-Format", OptionFormat::uint, false, 0, 2},
    {14, "Max-Age", OptionFormat::uint, false, 0, 4},
    {15, "Uri-Query", OptionFormat::string, true, 0, 255},
    {17, "Accept", OptionFormat::uint, false, 0, 2},
    {20, "Location-Query", OptionFormat::string, true, 0, 255},
    {23, "Block2", OptionFormat::uint, false, 0, 3},
    {27, "Block1", OptionFormat::uint, false, 0, 3},
    {28, "Size2", OptionFormat::uint, false, 0, 4},
    {35, "Proxy-Uri", OptionFormat::string, false, 1, 1034},
    {39, "Proxy-Scheme", OptionFormat::string, false, 1, 255},
    {60, "Size1", OptionFormat::uint, false, 0, 4},
    {252, "Echo", OptionFormat::opaque, false, 1, 40},
    {258, "No-Response", OptionFormat::uint, false, 0, 1},
    {292, "Request-Tag", OptionFormat::opaque, true, 0, 8},
};

TEST(OptionRegistry, EveryListedOption) {
  for (const Expected& e : expected_registry) {
    const OptionInfo* info = find_option(e.number);
    ASSERT_NE(info, nullptr) << e.number;
    EXPECT_EQ(info->number, e.number);
    EXPECT_EQ(info->name, e.name);
    EXPECT_EQ(info->format, e.format) << e.name;
    EXPECT_EQ(info->repeatable, e.repeatable) << e.name;
    EXPECT_EQ(info->min_length, e.min_length) << e.name;
    EXPECT_EQ(info->max_length, e.max_length) << e.name;
  }
  EXPECT_EQ(option_registry().size(), std::size(expected_registry));
}

TEST(OptionRegistry, UnknownNumbers) {
  for (std::uint16_t n : {0, 2, 9, 13, 16, 128, 259, 65535}) EXPECT_EQ(find_option(n), nullptr) << n;
}

TEST(OptionRegistry, NumberBits) {
  EXPECT_TRUE(is_critical(option::uri_host));
  EXPECT_TRUE(is_critical(option::block2));
  EXPECT_FALSE(is_critical(option::etag));
  EXPECT_FALSE(is_critical(option::size2));
  EXPECT_TRUE(is_unsafe(option::uri_host));
  EXPECT_TRUE(is_unsafe(option::observe));
  EXPECT_FALSE(is_unsafe(option::etag));
  EXPECT_TRUE(is_no_cache_key(option::size1));
  EXPECT_TRUE(is_no_cache_key(option::size2));
  EXPECT_FALSE(is_no_cache_key(option::etag));
  EXPECT_TRUE(is_no_cache_key(option::echo));  // RFC 9175: Echo is NoCacheKey
}

TEST(OptionValue, DecodeUint) {
  EXPECT_EQ(decode_uint({}), 0u);
  EXPECT_EQ(decode_uint(bytes({0x01})), 1u);
  EXPECT_EQ(decode_uint(bytes({0x01, 0x00})), 256u);
  EXPECT_EQ(decode_uint(bytes({0x12, 0x34, 0x56, 0x78})), 0x12345678u);
  EXPECT_EQ(decode_uint(bytes({0xaa, 0x12, 0x34, 0x56, 0x78})), 0x12345678u);  // low 4 bytes
}

// Builds a GET with the given options (already in order) and returns the critical check.
std::optional<std::uint16_t> check(std::vector<Option> options) {
  Message m;
  m.code = code::get;
  m.options = std::move(options);
  static std::vector<std::byte> wire;  // the view points into it
  wire = serialize(m);
  MessageView v;
  EXPECT_EQ(parse(wire, v), ParseError::ok);
  return first_bad_critical_option(v);
}

std::vector<std::byte> str(std::string_view s) { return test::cat({}, s); }

TEST(CriticalOptions, CleanRequest) {
  EXPECT_EQ(check({}), std::nullopt);
  EXPECT_EQ(check({{3, str("example.org")}, {11, str("a")}, {11, str("b")}, {15, str("x=1")},
                   {23, bytes({0x06})}}),
            std::nullopt);
}

TEST(CriticalOptions, UnknownCritical) {
  EXPECT_EQ(check({{11, str("a")}, {9, {}}}), std::optional<std::uint16_t>{9});  // sorted: 9 first
  EXPECT_EQ(check({{2049, bytes({1})}}), std::optional<std::uint16_t>{2049});
}

TEST(CriticalOptions, UnknownElectiveIgnored) {
  EXPECT_EQ(check({{2, bytes({1})}, {11, str("a")}, {2048, {}}}), std::nullopt);
}

TEST(CriticalOptions, RepeatedNonRepeatableUriHost) {
  EXPECT_EQ(check({{3, str("a")}, {3, str("b")}}), std::optional<std::uint16_t>{3});
}

TEST(CriticalOptions, RepeatedElectiveIgnored) {
  EXPECT_EQ(check({{14, bytes({1})}, {14, bytes({2})}}), std::nullopt);  // Max-Age twice
}

TEST(CriticalOptions, BadLength) {
  EXPECT_EQ(check({{3, {}}}), std::optional<std::uint16_t>{3});               // Uri-Host empty
  EXPECT_EQ(check({{11, filled(256, 'a')}}), std::optional<std::uint16_t>{11});
  EXPECT_EQ(check({{5, bytes({1})}}), std::optional<std::uint16_t>{5});       // If-None-Match
  EXPECT_EQ(check({{27, bytes({1, 2, 3, 4})}}), std::optional<std::uint16_t>{27});
  EXPECT_EQ(check({{7, bytes({1, 2, 3})}}), std::optional<std::uint16_t>{7});
  // Elective with a bad length (Content-Format of 3 bytes) is ignored.
  EXPECT_EQ(check({{12, bytes({1, 2, 3})}}), std::nullopt);
  // Bounds are inclusive.
  EXPECT_EQ(check({{11, filled(255, 'a')}}), std::nullopt);
  EXPECT_EQ(check({{35, filled(1034, 'a')}}), std::nullopt);
  EXPECT_EQ(check({{35, filled(1035, 'a')}}), std::optional<std::uint16_t>{35});
}

TEST(CriticalOptions, FirstOneWins) {
  EXPECT_EQ(check({{3, {}}, {9, {}}}), std::optional<std::uint16_t>{3});
}

TEST(UriRebuild, PathAndQuery) {
  EXPECT_EQ(uri_path(MessageView{}), "/");
  EXPECT_EQ(uri_query(MessageView{}), "");
  Message m;
  m.code = code::get;
  m.add_string_option(option::uri_path, "a b");
  m.add_string_option(option::uri_path, "c/d%");
  m.add_string_option(option::uri_path, "");
  m.add_string_option(option::uri_path, "ok-._~!$&'()*+,;=:@");
  m.add_string_option(option::uri_query, "k=v w");
  m.add_string_option(option::uri_query, "x=a&b#c/?");
  m.add_option(option::uri_path, bytes({0xc3, 0xa9}));
  const auto wire = serialize(m);
  MessageView v;
  ASSERT_EQ(parse(wire, v), ParseError::ok);
  EXPECT_EQ(uri_path(v), "/a%20b/c%2Fd%25//ok-._~!$&'()*+,;=:@/%C3%A9");
  EXPECT_EQ(uri_query(v), "k=v%20w&x=a%26b%23c/?");
}

TEST(UriPathSafety, DotSegmentsInAnyForm) {
  auto has_unsafe = [](std::initializer_list<std::string_view> segments) {
    Message m;
    m.code = code::get;
    for (auto s : segments) m.add_string_option(option::uri_path, s);
    const auto wire = serialize(m);
    MessageView v;
    EXPECT_EQ(parse(wire, v), ParseError::ok);
    return has_unsafe_path_segment(v);
  };
  EXPECT_FALSE(has_unsafe({}));
  EXPECT_FALSE(has_unsafe({"api", "v1.2", "a.b", "a/b"}));
  EXPECT_TRUE(has_unsafe({"api", "..."}));  // trimmed to ".." by some servers (issue 11 review)
  EXPECT_TRUE(has_unsafe({"api", "..;", "admin"}));
  EXPECT_TRUE(has_unsafe({"api", ".."}));
  EXPECT_TRUE(has_unsafe({"api", "%2e%2e", "x"}));
  EXPECT_TRUE(has_unsafe({"api", "x/../../y"}));
  EXPECT_TRUE(has_unsafe({"."}));
}

}  // namespace
}  // namespace coapgw::coap
