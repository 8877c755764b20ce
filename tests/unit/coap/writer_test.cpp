// MessageWriter bounds/ordering and Message (owning form) serialization.
#include <gtest/gtest.h>

#include <array>

#include "bytes.hpp"
#include "coap/message.hpp"
#include "coap/option.hpp"

namespace coapgw::coap {
namespace {

using test::bytes;
using test::cat;
using test::filled;
using test::text;

TEST(MessageWriter, WritesAppendixA1Request) {
  std::array<std::byte, 64> buf{};
  MessageWriter w(buf);
  ASSERT_TRUE(w.header(Type::con, code::get, 0x7d34, bytes({0x20})));
  ASSERT_TRUE(w.option_string(option::uri_path, "temperature"));
  ASSERT_TRUE(w.payload({}));
  EXPECT_FALSE(w.overflow());
  const auto expected = cat(bytes({0x41, 0x01, 0x7d, 0x34, 0x20, 0xbb}), "temperature");
  EXPECT_EQ(std::vector<std::byte>(w.bytes().begin(), w.bytes().end()), expected);
  EXPECT_EQ(w.size(), expected.size());
}

TEST(MessageWriter, OverflowInHeader) {
  std::array<std::byte, 4> buf{};
  MessageWriter w(buf);
  EXPECT_FALSE(w.header(Type::con, code::get, 1, bytes({1, 2})));
  EXPECT_TRUE(w.overflow());
  EXPECT_EQ(w.size(), 0u);
  EXPECT_FALSE(w.option(option::uri_path, {}));
}

TEST(MessageWriter, OverflowInOptionLeavesWellFormedPrefix) {
  std::array<std::byte, 10> buf{};
  MessageWriter w(buf);
  ASSERT_TRUE(w.header(Type::non, code::post, 2, {}));
  ASSERT_TRUE(w.option_string(option::uri_path, "abcd"));  // 5 bytes -> 9 total
  EXPECT_FALSE(w.option_string(option::uri_path, "e"));    // needs 2 more
  EXPECT_TRUE(w.overflow());
  EXPECT_EQ(w.size(), 9u);
  // Once overflowed, every further write fails even if it would fit.
  EXPECT_FALSE(w.payload(bytes({1})));
  EXPECT_EQ(w.size(), 9u);
  MessageView v;
  ASSERT_EQ(parse(w.bytes(), v), ParseError::ok);
  EXPECT_EQ(uri_path(v), "/abcd");
}

TEST(MessageWriter, OverflowInPayload) {
  std::array<std::byte, 8> buf{};
  MessageWriter w(buf);
  ASSERT_TRUE(w.header(Type::con, code::put, 3, {}));
  EXPECT_FALSE(w.payload(bytes({1, 2, 3, 4})));  // marker + 4 = 5 > 4 left
  EXPECT_TRUE(w.overflow());
  EXPECT_EQ(w.size(), 4u);
}

TEST(MessageWriter, ExactFitIsNotOverflow) {
  std::array<std::byte, 9> buf{};
  MessageWriter w(buf);
  ASSERT_TRUE(w.header(Type::con, code::put, 3, {}));
  EXPECT_TRUE(w.payload(bytes({1, 2, 3, 4})));
  EXPECT_FALSE(w.overflow());
  EXPECT_EQ(w.size(), 9u);
}

TEST(MessageWriter, OptionsMustBeNonDecreasing) {
  std::array<std::byte, 64> buf{};
  MessageWriter w(buf);
  ASSERT_TRUE(w.header(Type::con, code::get, 1, {}));
  ASSERT_TRUE(w.option_string(option::uri_path, "a"));
  ASSERT_TRUE(w.option_string(option::uri_path, "b"));  // equal is fine (repeat)
  EXPECT_FALSE(w.option_string(option::uri_host, "h"));  // 3 < 11
  EXPECT_FALSE(w.overflow());
  EXPECT_TRUE(w.option_string(option::uri_query, "q"));
  MessageView v;
  ASSERT_EQ(parse(w.bytes(), v), ParseError::ok);
  EXPECT_EQ(v.option_count, 3u);
}

TEST(MessageWriter, RefusesOutOfOrderAndUnparseableCalls) {
  std::array<std::byte, 64> buf{};
  MessageWriter before_header(buf);
  EXPECT_FALSE(before_header.option(option::uri_path, {}));
  EXPECT_FALSE(before_header.payload(bytes({1})));

  MessageWriter long_token(buf);
  EXPECT_FALSE(long_token.header(Type::con, code::get, 1, filled(9, 1)));
  EXPECT_FALSE(long_token.overflow());

  MessageWriter empty(buf);
  EXPECT_FALSE(empty.header(Type::ack, code::empty, 1, bytes({1})));
  ASSERT_TRUE(empty.header(Type::ack, code::empty, 1, {}));
  EXPECT_FALSE(empty.header(Type::ack, code::empty, 1, {}));  // only once
  EXPECT_FALSE(empty.option(option::uri_path, {}));
  EXPECT_FALSE(empty.payload(bytes({1})));
  EXPECT_EQ(empty.size(), 4u);

  MessageWriter after_payload(buf);
  ASSERT_TRUE(after_payload.header(Type::con, code::post, 1, {}));
  ASSERT_TRUE(after_payload.payload(bytes({1})));
  EXPECT_FALSE(after_payload.option(option::uri_path, {}));
  EXPECT_FALSE(after_payload.payload(bytes({2})));
}

TEST(MessageWriter, UintOptionIsMinimal) {
  struct Case { std::uint32_t value; std::vector<std::byte> encoded; };
  const Case cases[] = {{0, {}}, {1, bytes({1})}, {255, bytes({0xff})}, {256, bytes({1, 0})},
                        {0xffff, bytes({0xff, 0xff})}, {0x10000, bytes({1, 0, 0})},
                        {0xffffffff, bytes({0xff, 0xff, 0xff, 0xff})}};
  for (const Case& c : cases) {
    std::array<std::byte, 16> buf{};
    MessageWriter w(buf);
    ASSERT_TRUE(w.header(Type::con, code::get, 1, {}));
    ASSERT_TRUE(w.option_uint(option::max_age, c.value));
    MessageView v;
    ASSERT_EQ(parse(w.bytes(), v), ParseError::ok);
    ASSERT_EQ(v.option_count, 1u);
    EXPECT_EQ(std::vector<std::byte>(v.options[0].value.begin(), v.options[0].value.end()),
              c.encoded)
        << c.value;
    EXPECT_EQ(decode_uint(v.options[0].value), c.value);
  }
}

TEST(MessageSerialize, SortsOptionsStably) {
  Message m;
  m.type = Type::con;
  m.code = code::post;
  m.message_id = 0x1234;
  m.token = bytes({0xab});
  m.add_string_option(option::uri_path, "b");
  m.add_string_option(option::uri_host, "h");
  m.add_uint_option(option::content_format, 50);
  m.add_string_option(option::uri_path, "c");
  m.payload = bytes({'x'});
  const auto wire = serialize(m);
  const auto expected = cat(
      bytes({0x41, 0x02, 0x12, 0x34, 0xab, 0x31, 'h', 0x81, 'b', 0x01, 'c', 0x11, 50, 0xff, 'x'}),
      std::string_view{});
  EXPECT_EQ(wire, expected);
  EXPECT_EQ(serialized_size(m), wire.size());
  // Options in the owning message keep their insertion order.
  EXPECT_EQ(m.options[0].number, option::uri_path);

  MessageView v;
  ASSERT_EQ(parse(wire, v), ParseError::ok);
  EXPECT_EQ(uri_path(v), "/b/c");
}

TEST(MessageSerialize, SpanFormFailsWhenTooSmall) {
  Message m;
  m.code = code::get;
  m.add_string_option(option::uri_path, "temperature");
  const auto expected = serialize(m);
  std::vector<std::byte> small(expected.size() - 1);
  EXPECT_EQ(serialize(m, small), 0u);
  std::vector<std::byte> exact(expected.size());
  ASSERT_EQ(serialize(m, exact), expected.size());
  EXPECT_EQ(exact, expected);
}

TEST(MessageSerialize, RefusesUnencodable) {
  Message long_token;
  long_token.code = code::get;
  long_token.token = filled(9, 1);
  EXPECT_TRUE(serialize(long_token).empty());
  EXPECT_EQ(serialized_size(long_token), 0u);

  Message empty_with_payload;
  empty_with_payload.type = Type::ack;
  empty_with_payload.payload = bytes({1});
  EXPECT_TRUE(serialize(empty_with_payload).empty());
  std::array<std::byte, 16> buf{};
  EXPECT_EQ(serialize(empty_with_payload, buf), 0u);
}

TEST(MessageOwning, FromViewFindRemove) {
  const auto wire = cat(bytes({0x41, 0x01, 0x00, 0x07, 0x99, 0x31, 'h', 0x81, 'a', 0x01, 'b', 0xff}),
                        "body");
  MessageView v;
  ASSERT_EQ(parse(wire, v), ParseError::ok);
  Message m = Message::from_view(v);
  EXPECT_EQ(m.type, Type::con);
  EXPECT_EQ(m.code, code::get);
  EXPECT_EQ(m.message_id, 7);
  EXPECT_EQ(m.token, bytes({0x99}));
  ASSERT_EQ(m.options.size(), 3u);
  EXPECT_EQ(text(m.payload), "body");
  ASSERT_NE(m.find(option::uri_path), nullptr);
  EXPECT_EQ(text(m.find(option::uri_path)->value), "a");
  m.remove_option(option::uri_path);
  EXPECT_EQ(m.find(option::uri_path), nullptr);
  EXPECT_EQ(m.options.size(), 1u);
  EXPECT_EQ(serialize(m), cat(bytes({0x41, 0x01, 0x00, 0x07, 0x99, 0x31, 'h', 0xff}), "body"));
}

}  // namespace
}  // namespace coapgw::coap

namespace coapgw::coap {
namespace {

// body(): options and payload without the RFC 7252 header, for the RFC 8323 framings.
TEST(MessageWriterBody, WritesOnlyOptionsAndPayload) {
  std::array<std::byte, 16> buf{};
  MessageWriter w(buf);
  ASSERT_TRUE(w.body(code::get));
  EXPECT_FALSE(w.header(Type::con, code::get, 1, {}));  // one start only
  ASSERT_TRUE(w.option_string(option::uri_path, "a"));
  ASSERT_TRUE(w.payload(as_bytes("x")));
  EXPECT_EQ(std::vector<std::byte>(w.bytes().begin(), w.bytes().end()),
            test::bytes({0xb1, 'a', 0xff, 'x'}));
  MessageWriter empty(buf);
  ASSERT_TRUE(empty.body(code::empty));
  EXPECT_FALSE(empty.option_string(option::uri_path, "a"));
  EXPECT_EQ(empty.size(), 0u);
}

}  // namespace
}  // namespace coapgw::coap
