// Parser tests: RFC 7252 Appendix A exchanges, every ParseError, extended option forms at their edges.
#include <gtest/gtest.h>

#include "bytes.hpp"
#include "coap/message.hpp"
#include "coap/option.hpp"

namespace coapgw::coap {
namespace {

using test::bytes;
using test::cat;
using test::filled;
using test::text;

ParseError parse_bytes(const std::vector<std::byte>& d, MessageView& v) { return parse(d, v); }
ParseError parse_bytes(const std::vector<std::byte>& d) {
  MessageView v;
  return parse(d, v);
}

// Parses, re-serializes through Message and expects the very same bytes (the encoding is unique).
void expect_round_trip(const std::vector<std::byte>& d) {
  MessageView v;
  ASSERT_EQ(parse(d, v), ParseError::ok);
  EXPECT_EQ(serialize(Message::from_view(v)), d);
}

// --- RFC 7252 Appendix A ---

TEST(CoapParse, AppendixA1ConfirmableGetPiggybackedResponse) {
  const auto request = cat(bytes({0x40, 0x01, 0x7d, 0x34, 0xbb}), "temperature");
  MessageView v;
  ASSERT_EQ(parse_bytes(request, v), ParseError::ok);
  EXPECT_EQ(v.type, Type::con);
  EXPECT_EQ(v.code, code::get);
  EXPECT_EQ(v.message_id, 0x7d34);
  EXPECT_TRUE(v.token.empty());
  ASSERT_EQ(v.option_count, 1u);
  EXPECT_EQ(v.options[0].number, option::uri_path);
  EXPECT_EQ(text(v.options[0].value), "temperature");
  EXPECT_TRUE(v.payload.empty());
  expect_round_trip(request);

  const auto response = cat(bytes({0x60, 0x45, 0x7d, 0x34, 0xff}), "22.3 C");
  ASSERT_EQ(parse_bytes(response, v), ParseError::ok);
  EXPECT_EQ(v.type, Type::ack);
  EXPECT_EQ(v.code, code::content);
  EXPECT_EQ(v.option_count, 0u);
  EXPECT_EQ(text(v.payload), "22.3 C");
  expect_round_trip(response);
}

TEST(CoapParse, AppendixA1WithToken) {
  const auto request = cat(bytes({0x41, 0x01, 0x7d, 0x34, 0x20, 0xbb}), "temperature");
  MessageView v;
  ASSERT_EQ(parse_bytes(request, v), ParseError::ok);
  ASSERT_EQ(v.token.size(), 1u);
  EXPECT_EQ(v.token[0], std::byte{0x20});
  EXPECT_EQ(uri_path(v), "/temperature");
  expect_round_trip(request);
  expect_round_trip(cat(bytes({0x61, 0x45, 0x7d, 0x34, 0x20, 0xff}), "22.3 C"));
}

TEST(CoapParse, AppendixA2SeparateResponse) {
  MessageView v;
  const auto empty_ack = bytes({0x60, 0x00, 0x7d, 0x38});
  ASSERT_EQ(parse_bytes(empty_ack, v), ParseError::ok);
  EXPECT_EQ(v.type, Type::ack);
  EXPECT_TRUE(is_empty(v.code));
  expect_round_trip(empty_ack);

  const auto separate = cat(bytes({0x41, 0x45, 0xad, 0x7b, 0x71, 0xff}), "22.3 C");
  ASSERT_EQ(parse_bytes(separate, v), ParseError::ok);
  EXPECT_EQ(v.type, Type::con);
  EXPECT_EQ(v.message_id, 0xad7b);
  EXPECT_EQ(text(v.payload), "22.3 C");
  expect_round_trip(separate);
}

TEST(CoapParse, AppendixA3NonConfirmable) {
  const auto request = cat(bytes({0x51, 0x01, 0x7d, 0x40, 0x74, 0xbb}), "temperature");
  MessageView v;
  ASSERT_EQ(parse_bytes(request, v), ParseError::ok);
  EXPECT_EQ(v.type, Type::non);
  expect_round_trip(request);
  expect_round_trip(cat(bytes({0x51, 0x45, 0xad, 0x7d, 0x74, 0xff}), "22.3 C"));
}

TEST(CoapParse, ResetMessage) {
  MessageView v;
  const auto rst = bytes({0x70, 0x00, 0x7d, 0x34});
  ASSERT_EQ(parse_bytes(rst, v), ParseError::ok);
  EXPECT_EQ(v.type, Type::rst);
  expect_round_trip(rst);
}

TEST(CoapParse, SeveralOptionsAndQuery) {
  // CON GET token 0xd2 0x0a, Uri-Host "h", Uri-Path "sensors"/"temp", Uri-Query "a=1", "b=2"
  auto d = bytes({0x42, 0x01, 0x12, 0x34, 0xd2, 0x0a, 0x31, 'h'});
  d = cat(cat(d, bytes({0x87})), "sensors");
  d = cat(cat(d, bytes({0x04})), "temp");
  d = cat(cat(d, bytes({0x43})), "a=1");
  d = cat(cat(d, bytes({0x03})), "b=2");
  MessageView v;
  ASSERT_EQ(parse_bytes(d, v), ParseError::ok);
  ASSERT_EQ(v.option_count, 5u);
  EXPECT_EQ(v.options[0].number, option::uri_host);
  EXPECT_EQ(v.options[1].number, option::uri_path);
  EXPECT_EQ(v.options[2].number, option::uri_path);
  EXPECT_EQ(v.options[3].number, option::uri_query);
  EXPECT_EQ(uri_path(v), "/sensors/temp");
  EXPECT_EQ(uri_query(v), "a=1&b=2");
  ASSERT_NE(v.find(option::uri_path), nullptr);
  EXPECT_EQ(text(v.find(option::uri_path)->value), "sensors");
  EXPECT_EQ(v.find(option::content_format), nullptr);
  EXPECT_EQ(v.option_list().size(), 5u);
  expect_round_trip(d);
}

// --- every ParseError ---

TEST(CoapParseError, TooShort) {
  EXPECT_EQ(parse_bytes({}), ParseError::too_short);
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0x00})), ParseError::too_short);
}

TEST(CoapParseError, BadVersion) {
  EXPECT_EQ(parse_bytes(bytes({0x00, 0x01, 0x00, 0x01})), ParseError::bad_version);
  EXPECT_EQ(parse_bytes(bytes({0x80, 0x01, 0x00, 0x01})), ParseError::bad_version);
  EXPECT_EQ(parse_bytes(bytes({0xc0, 0x01, 0x00, 0x01})), ParseError::bad_version);
}

TEST(CoapParseError, BadTokenLength) {
  for (int tkl = 9; tkl <= 15; ++tkl)
    EXPECT_EQ(parse_bytes(cat(bytes({0x40 | tkl, 0x01, 0, 1}), filled(15, 0xaa))),
              ParseError::bad_token_length)
        << tkl;
  // 8 is the maximum and fine.
  EXPECT_EQ(parse_bytes(cat(bytes({0x48, 0x01, 0, 1}), filled(8, 0xaa))), ParseError::ok);
}

TEST(CoapParseError, TruncatedToken) {
  EXPECT_EQ(parse_bytes(bytes({0x42, 0x01, 0, 1, 0xaa})), ParseError::truncated_token);
  EXPECT_EQ(parse_bytes(bytes({0x48, 0x45, 0, 1})), ParseError::truncated_token);
}

TEST(CoapParseError, ReservedNibble) {
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0xf0})), ParseError::reserved_nibble);
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0x1f, 0x00})), ParseError::reserved_nibble);
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0xfe})), ParseError::reserved_nibble);
}

TEST(CoapParseError, TruncatedOption) {
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0xd0})), ParseError::truncated_option);
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0xe0, 0x00})), ParseError::truncated_option);
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0x1d})), ParseError::truncated_option);
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0x1e, 0x01})), ParseError::truncated_option);
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0x13, 'a', 'b'})), ParseError::truncated_option);
  // Length 13 announced, 12 present.
  EXPECT_EQ(parse_bytes(cat(bytes({0x40, 0x01, 0, 1, 0xbd, 0x00}), filled(12, 'x'))),
            ParseError::truncated_option);
}

TEST(CoapParseError, OptionNumberOverflow) {
  // 269 + 0xffff is past 65535 on its own.
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0xe0, 0xff, 0xff})),
            ParseError::option_number_overflow);
  // 65535 exactly is fine; one more is not.
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0xe0, 0xfe, 0xf2})), ParseError::ok);
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0xe0, 0xfe, 0xf2, 0x10})),
            ParseError::option_number_overflow);
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0xe0, 0xfe, 0xf3})),
            ParseError::option_number_overflow);
}

TEST(CoapParseError, PayloadMarkerWithoutPayload) {
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x01, 0, 1, 0xff})),
            ParseError::payload_marker_without_payload);
  EXPECT_EQ(parse_bytes(bytes({0x41, 0x45, 0, 1, 0x07, 0xb1, 'a', 0xff})),
            ParseError::payload_marker_without_payload);
}

TEST(CoapParseError, TooManyOptions) {
  auto at_limit = bytes({0x40, 0x01, 0, 1, 0xb0});
  at_limit = cat(at_limit, filled(max_options - 1, 0x00));  // Uri-Path "" x 64
  MessageView v;
  ASSERT_EQ(parse_bytes(at_limit, v), ParseError::ok);
  EXPECT_EQ(v.option_count, max_options);
  EXPECT_EQ(parse_bytes(cat(at_limit, bytes({0x00}))), ParseError::too_many_options);
}

TEST(CoapParseError, EmptyWithContent) {
  EXPECT_EQ(parse_bytes(bytes({0x41, 0x00, 0, 1, 0xaa})), ParseError::empty_with_content);
  EXPECT_EQ(parse_bytes(bytes({0x40, 0x00, 0, 1, 0xb0})), ParseError::empty_with_content);
  EXPECT_EQ(parse_bytes(bytes({0x60, 0x00, 0, 1, 0xff, 0x01})), ParseError::empty_with_content);
  // A TKL nibble alone, with no token bytes present, is still content for an Empty message.
  EXPECT_EQ(parse_bytes(bytes({0x41, 0x00, 0, 1})), ParseError::empty_with_content);
}

TEST(CoapParseError, NamesAreSnakeCase) {
  EXPECT_EQ(to_string(ParseError::ok), "ok");
  EXPECT_EQ(to_string(ParseError::too_short), "too_short");
  EXPECT_EQ(to_string(ParseError::bad_version), "bad_version");
  EXPECT_EQ(to_string(ParseError::bad_token_length), "bad_token_length");
  EXPECT_EQ(to_string(ParseError::truncated_token), "truncated_token");
  EXPECT_EQ(to_string(ParseError::reserved_nibble), "reserved_nibble");
  EXPECT_EQ(to_string(ParseError::truncated_option), "truncated_option");
  EXPECT_EQ(to_string(ParseError::option_number_overflow), "option_number_overflow");
  EXPECT_EQ(to_string(ParseError::payload_marker_without_payload), "payload_marker_without_payload");
  EXPECT_EQ(to_string(ParseError::too_many_options), "too_many_options");
  EXPECT_EQ(to_string(ParseError::empty_with_content), "empty_with_content");
}

TEST(CoapParseHeader, AllowsRstOfMalformedCon) {
  // TKL 15 is malformed, but the header still yields type and message id.
  const auto d = bytes({0x4f, 0x01, 0xbe, 0xef});
  EXPECT_EQ(parse_bytes(d), ParseError::bad_token_length);
  const auto h = parse_header(d);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->type, Type::con);
  EXPECT_EQ(h->token_length, 15);
  EXPECT_EQ(h->code, code::get);
  EXPECT_EQ(h->message_id, 0xbeef);
  EXPECT_FALSE(parse_header(bytes({0x80, 0x01, 0, 1})).has_value());
  EXPECT_FALSE(parse_header(bytes({0x40, 0x01, 0})).has_value());
}

// --- extended delta / length at their edges ---

class ExtendedForms : public ::testing::TestWithParam<std::size_t> {};

TEST_P(ExtendedForms, DeltaEncodesAndParses) {
  const auto number = static_cast<std::uint16_t>(GetParam());
  Message m;
  m.code = code::get;
  m.add_string_option(number, "v");
  const auto wire = serialize(m);
  const auto first = std::to_integer<int>(wire.at(4));
  const int expected_nibble = number < 13 ? number : number < 269 ? 13 : 14;
  EXPECT_EQ(first >> 4, expected_nibble);
  EXPECT_EQ(wire.size(), 4u + 1 + (number < 13 ? 0 : number < 269 ? 1 : 2) + 1);
  MessageView v;
  ASSERT_EQ(parse(wire, v), ParseError::ok);
  ASSERT_EQ(v.option_count, 1u);
  EXPECT_EQ(v.options[0].number, number);
  EXPECT_EQ(text(v.options[0].value), "v");
}

TEST_P(ExtendedForms, LengthEncodesAndParses) {
  const std::size_t length = GetParam();
  Message m;
  m.code = code::post;
  m.add_option(option::uri_path, filled(length, 'x'));
  m.payload = bytes({1, 2, 3});
  const auto wire = serialize(m);
  const auto first = std::to_integer<int>(wire.at(4));
  const int expected_nibble = length < 13 ? static_cast<int>(length) : length < 269 ? 13 : 14;
  EXPECT_EQ(first & 0x0f, expected_nibble);
  MessageView v;
  ASSERT_EQ(parse(wire, v), ParseError::ok);
  ASSERT_EQ(v.option_count, 1u);
  EXPECT_EQ(v.options[0].value.size(), length);
  EXPECT_EQ(v.payload.size(), 3u);
}

INSTANTIATE_TEST_SUITE_P(Edges, ExtendedForms,
                         ::testing::Values(0, 1, 12, 13, 14, 268, 269, 270, 1034, 65535));

TEST(CoapParse, ExtendedBytesAreExact) {
  // Delta 13 -> 0xd_ 0x00; 268 -> 0xd_ 0xff; 269 -> 0xe_ 0x00 0x00; 65535 -> 0xe_ 0xfe 0xf2.
  EXPECT_EQ(serialize(Message{Type::con, code::get, 1, {}, {{13, {}}}, {}}),
            bytes({0x40, 0x01, 0, 1, 0xd0, 0x00}));
  EXPECT_EQ(serialize(Message{Type::con, code::get, 1, {}, {{268, {}}}, {}}),
            bytes({0x40, 0x01, 0, 1, 0xd0, 0xff}));
  EXPECT_EQ(serialize(Message{Type::con, code::get, 1, {}, {{269, {}}}, {}}),
            bytes({0x40, 0x01, 0, 1, 0xe0, 0x00, 0x00}));
  EXPECT_EQ(serialize(Message{Type::con, code::get, 1, {}, {{65535, {}}}, {}}),
            bytes({0x40, 0x01, 0, 1, 0xe0, 0xfe, 0xf2}));
  // Length 13 and 269.
  EXPECT_EQ(serialize(Message{Type::con, code::get, 1, {}, {{1, filled(13, 0)}}, {}}),
            cat(bytes({0x40, 0x01, 0, 1, 0x1d, 0x00}), filled(13, 0)));
  EXPECT_EQ(serialize(Message{Type::con, code::get, 1, {}, {{1, filled(269, 0)}}, {}}),
            cat(bytes({0x40, 0x01, 0, 1, 0x1e, 0x00, 0x00}), filled(269, 0)));
}

// --- names and code helpers ---

TEST(CoapCodes, NamesAndClasses) {
  EXPECT_EQ(type_name(Type::con), "con");
  EXPECT_EQ(type_name(Type::non), "non");
  EXPECT_EQ(type_name(Type::ack), "ack");
  EXPECT_EQ(type_name(Type::rst), "rst");
  EXPECT_EQ(code_string(code::content), "2.05");
  EXPECT_EQ(code_string(code::get), "0.01");
  EXPECT_EQ(code_string(code::proxying_not_supported), "5.05");
  EXPECT_EQ(code_string(code::request_entity_too_large), "4.13");
  EXPECT_EQ(make_code(4, 4), code::not_found);
  EXPECT_EQ(make_code(2, 31), code::continue_);
  EXPECT_EQ(code_class(code::not_found), 4u);
  EXPECT_EQ(code_detail(code::not_found), 4u);
  EXPECT_EQ(code_class(code::proxying_not_supported), 5u);
  EXPECT_EQ(code_detail(code::continue_), 31u);
  static_assert(code_class(make_code(7, 31)) == 7 && code_detail(make_code(7, 31)) == 31);
  EXPECT_EQ(method_name(code::get), "GET");
  EXPECT_EQ(method_name(code::del), "DELETE");
  EXPECT_EQ(method_name(code::ipatch), "IPATCH");
  EXPECT_EQ(method_name(code::content), "");
  EXPECT_EQ(method_name(0x08), "");
  for (std::uint8_t c = code::get; c <= code::ipatch; ++c) EXPECT_EQ(method_code(method_name(c)), c);
  EXPECT_EQ(method_code("DELETE"), code::del);
  EXPECT_EQ(method_code("get"), std::nullopt);     // exact case, as forwarded requests carry it
  EXPECT_EQ(method_code("iPATCH"), std::nullopt);  // the HTTP spelling is the HTTP upstream's
  EXPECT_EQ(method_code(""), std::nullopt);
  EXPECT_EQ(method_code("CONNECT"), std::nullopt);
  EXPECT_TRUE(is_request(code::get));
  EXPECT_TRUE(is_request(make_code(0, 31)));
  EXPECT_FALSE(is_request(code::empty));
  EXPECT_FALSE(is_request(code::created));
  EXPECT_TRUE(is_response(code::created));
  EXPECT_TRUE(is_response(make_code(5, 31)));
  EXPECT_FALSE(is_response(make_code(1, 0)));
  EXPECT_FALSE(is_response(make_code(6, 0)));
  EXPECT_TRUE(is_empty(code::empty));
  EXPECT_FALSE(is_empty(code::get));
}

}  // namespace
}  // namespace coapgw::coap
