// RFC 8323 framing tests: frames written by hand from the §3.2 and §4.4 layouts (every Len form at
// its edges), incremental extents, every FrameError, and the §5 signalling messages.
#include <gtest/gtest.h>

#include "bytes.hpp"
#include "coap/option.hpp"
#include "coap/stream_frame.hpp"

namespace coapgw::coap {
namespace {

using test::bytes;
using test::cat;
using test::filled;
using test::text;

FrameError parse_bytes(Framing f, const std::vector<std::byte>& d, MessageView& v,
                       std::size_t max = SIZE_MAX) {
  return parse_frame(f, d, v, max);
}
FrameError parse_bytes(Framing f, const std::vector<std::byte>& d) {
  MessageView v;
  return parse_frame(f, d, v);
}

// Parses, re-serializes through Message and expects the very same bytes (the encoding is unique).
void expect_round_trip(Framing f, const std::vector<std::byte>& d) {
  MessageView v;
  ASSERT_EQ(parse_frame(f, d, v), FrameError::ok);
  const Message m = Message::from_view(v);
  EXPECT_EQ(frame_size(f, m), d.size());
  EXPECT_EQ(serialize_frame(f, m), d);
}

// GET /a with token 0x01: Len=2 (option 0xB1 'a'), TKL=1, Code 0.01.
const std::vector<std::byte> get_a = bytes({0x21, 0x01, 0x01, 0xb1, 'a'});

TEST(StreamFrame, ShortLengthInTheNibble) {
  MessageView v;
  ASSERT_EQ(parse_bytes(Framing::tcp, get_a, v), FrameError::ok);
  EXPECT_EQ(v.code, code::get);
  EXPECT_EQ(v.type, Type::con);
  EXPECT_EQ(v.message_id, 0);
  ASSERT_EQ(v.token.size(), 1u);
  EXPECT_EQ(v.token[0], std::byte{0x01});
  EXPECT_EQ(uri_path(v), "/a");
  EXPECT_TRUE(v.payload.empty());
  expect_round_trip(Framing::tcp, get_a);
}

TEST(StreamFrame, BareSignalHasOnlyTwoBytes) {
  MessageView v;
  ASSERT_EQ(parse_bytes(Framing::tcp, bytes({0x00, 0xe2}), v), FrameError::ok);  // Ping, no token
  EXPECT_EQ(v.code, signal::ping);
  EXPECT_EQ(v.option_count, 0u);
  expect_round_trip(Framing::tcp, bytes({0x00, 0xe2}));
}

TEST(StreamFrame, EightBitExtendedLength) {
  // 2.05 with a 20-byte payload: body 21 bytes -> Len 13, extension 21 - 13 = 8.
  const auto frame = cat(bytes({0xd0, 0x08, 0x45, 0xff}), filled(20, 'x'));
  MessageView v;
  ASSERT_EQ(parse_bytes(Framing::tcp, frame, v), FrameError::ok);
  EXPECT_EQ(v.code, code::content);
  EXPECT_EQ(v.payload.size(), 20u);
  expect_round_trip(Framing::tcp, frame);
  // Edges: 12 stays in the nibble, 13 is the first extended value, 268 the last 8-bit one.
  expect_round_trip(Framing::tcp, cat(bytes({0xc0, 0x45, 0xff}), filled(11, 'x')));
  expect_round_trip(Framing::tcp, cat(bytes({0xd0, 0x00, 0x45, 0xff}), filled(12, 'x')));
  expect_round_trip(Framing::tcp, cat(bytes({0xd0, 0xff, 0x45, 0xff}), filled(267, 'x')));
}

TEST(StreamFrame, SixteenBitExtendedLength) {
  // Body 300 bytes -> Len 14, extension 300 - 269 = 31.
  const auto frame = cat(bytes({0xe0, 0x00, 0x1f, 0x45, 0xff}), filled(299, 'y'));
  MessageView v;
  ASSERT_EQ(parse_bytes(Framing::tcp, frame, v), FrameError::ok);
  EXPECT_EQ(v.payload.size(), 299u);
  expect_round_trip(Framing::tcp, frame);
  expect_round_trip(Framing::tcp, cat(bytes({0xe0, 0x00, 0x00, 0x45, 0xff}), filled(268, 'y')));
  expect_round_trip(Framing::tcp, cat(bytes({0xe0, 0xff, 0xff, 0x45, 0xff}), filled(65803, 'y')));
}

TEST(StreamFrame, ThirtyTwoBitExtendedLength) {
  // Body 70000 bytes -> Len 15, extension 70000 - 65805 = 4195 = 0x1063.
  const auto frame = cat(bytes({0xf0, 0x00, 0x00, 0x10, 0x63, 0x45, 0xff}), filled(69999, 'z'));
  MessageView v;
  ASSERT_EQ(parse_bytes(Framing::tcp, frame, v), FrameError::ok);
  EXPECT_EQ(v.payload.size(), 69999u);
  expect_round_trip(Framing::tcp, frame);
  expect_round_trip(Framing::tcp, cat(bytes({0xf0, 0, 0, 0, 0, 0x45, 0xff}), filled(65804, 'z')));
}

TEST(StreamFrame, ExtentNeedsOnlyTheLengthBytes) {
  EXPECT_FALSE(tcp_frame_extent({}));
  // Len 14 needs two more bytes before the size is known.
  const auto head = bytes({0xe3, 0x00, 0x1f});
  EXPECT_FALSE(tcp_frame_extent(std::span(head).first(1)));
  EXPECT_FALSE(tcp_frame_extent(std::span(head).first(2)));
  const auto extent = tcp_frame_extent(head);
  ASSERT_TRUE(extent);
  EXPECT_EQ(extent->header_size, 4u);  // Len/TKL, 2 length bytes, Code
  EXPECT_EQ(extent->token_length, 3u);
  EXPECT_EQ(extent->frame_size, 4u + 3u + 300u);
  // The largest frame a 32-bit extension can announce is reported, not wrapped.
  const auto huge = tcp_frame_extent(bytes({0xf0, 0xff, 0xff, 0xff, 0xff}));
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->frame_size, 6u + 65805u + 0xffffffffull);
  const auto one = tcp_frame_extent(bytes({0x00}));
  ASSERT_TRUE(one);
  EXPECT_EQ(one->frame_size, 2u);
}

TEST(StreamFrame, TcpErrors) {
  EXPECT_EQ(parse_bytes(Framing::tcp, {}), FrameError::too_short);
  EXPECT_EQ(parse_bytes(Framing::tcp, bytes({0x00})), FrameError::too_short);       // no Code
  EXPECT_EQ(parse_bytes(Framing::tcp, bytes({0xd0, 0x05})), FrameError::too_short); // no Code
  EXPECT_EQ(parse_bytes(Framing::tcp, bytes({0x21, 0x01, 0x01, 0xb1})), FrameError::too_short);
  EXPECT_EQ(parse_bytes(Framing::tcp, cat(get_a, bytes({0x00}))), FrameError::too_long);
  EXPECT_EQ(parse_bytes(Framing::tcp, bytes({0x09, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9})),
            FrameError::bad_token_length);
  MessageView v;
  EXPECT_EQ(parse_bytes(Framing::tcp, get_a, v, get_a.size() - 1), FrameError::too_large);
  EXPECT_EQ(parse_bytes(Framing::tcp, get_a, v, get_a.size()), FrameError::ok);
  // Body errors come from the shared RFC 7252 body parser under their own names.
  EXPECT_EQ(parse_bytes(Framing::tcp, bytes({0x10, 0x01, 0xf0})), FrameError::reserved_nibble);
  EXPECT_EQ(parse_bytes(Framing::tcp, bytes({0x10, 0x01, 0x01})), FrameError::truncated_option);
  EXPECT_EQ(parse_bytes(Framing::tcp, bytes({0x10, 0x45, 0xff})),
            FrameError::payload_marker_without_payload);
  EXPECT_EQ(parse_bytes(Framing::tcp, bytes({0x60, 0x01, 0xe0, 0xff, 0xff, 0xe0, 0xff, 0xff})),
            FrameError::option_number_overflow);
  std::vector<std::byte> many = bytes({0xd0, 65 - 13, 0x01});
  for (int i = 0; i < 65; ++i) many.push_back(std::byte{0x00});  // 65 options of number 0
  EXPECT_EQ(parse_bytes(Framing::tcp, many), FrameError::too_many_options);
}

TEST(StreamFrame, WebSocketHasNoLength) {
  // §4.4: Len 0, TKL 1, GET, token 0xaa, Uri-Path "a".
  const auto frame = bytes({0x01, 0x01, 0xaa, 0xb1, 'a'});
  MessageView v;
  ASSERT_EQ(parse_bytes(Framing::websocket, frame, v), FrameError::ok);
  EXPECT_EQ(v.code, code::get);
  EXPECT_EQ(uri_path(v), "/a");
  expect_round_trip(Framing::websocket, frame);
  // A 300-byte payload still has a two-byte header.
  expect_round_trip(Framing::websocket, cat(bytes({0x00, 0x45, 0xff}), filled(300, 'w')));
  EXPECT_EQ(parse_bytes(Framing::websocket, bytes({0x21, 0x01, 0xaa, 0xb1, 'a'})),
            FrameError::nonzero_length);
  EXPECT_EQ(parse_bytes(Framing::websocket, bytes({0x00})), FrameError::too_short);
  EXPECT_EQ(parse_bytes(Framing::websocket, bytes({0x02, 0x01, 0xaa})), FrameError::too_short);
  EXPECT_EQ(parse_bytes(Framing::websocket, bytes({0x0f, 0x01})), FrameError::bad_token_length);
  EXPECT_EQ(parse_bytes(Framing::websocket, frame, v, 4), FrameError::too_large);
}

TEST(StreamFrame, SerializeRefusesWhatCannotBeFramed) {
  Message m;
  m.code = code::get;
  m.token = filled(9, 1);
  EXPECT_EQ(frame_size(Framing::tcp, m), 0u);
  EXPECT_TRUE(serialize_frame(Framing::tcp, m).empty());
  m.token = filled(2, 1);
  m.add_string_option(option::uri_path, "abc");
  std::vector<std::byte> out(frame_size(Framing::tcp, m));
  ASSERT_EQ(out.size(), 2u + 2u + 4u);
  EXPECT_EQ(serialize_frame(Framing::tcp, m, std::span(out).first(out.size() - 1)), 0u);
  EXPECT_EQ(serialize_frame(Framing::tcp, m, out), out.size());
  EXPECT_EQ(out, bytes({0x42, 0x01, 0x01, 0x01, 0xb3, 'a', 'b', 'c'}));
  Message empty;
  empty.payload = filled(1, 0);
  EXPECT_EQ(frame_size(Framing::tcp, empty), 0u);
}

TEST(StreamSignal, CsmLayout) {
  // 7.01, Max-Message-Size 1152 (0x0480) as option 2, Block-Wise-Transfer as option 4 (empty).
  const auto wire = serialize_frame(Framing::tcp, make_csm({1152, true}));
  EXPECT_EQ(wire, bytes({0x40, 0xe1, 0x22, 0x04, 0x80, 0x20}));
  MessageView v;
  ASSERT_EQ(parse_frame(Framing::tcp, wire, v), FrameError::ok);
  Csm got{0, false};
  EXPECT_FALSE(apply_csm(v, got));
  EXPECT_EQ(got.max_message_size, 1152u);
  EXPECT_TRUE(got.block_wise);
  EXPECT_EQ(serialize_frame(Framing::tcp, make_csm({70000, false})),
            bytes({0x40, 0xe1, 0x23, 0x01, 0x11, 0x70}));
}

TEST(StreamSignal, CsmSettingsPersistAndUnknownCriticalIsNamed) {
  Csm settings{4096, true};
  MessageView v;
  ASSERT_EQ(parse_bytes(Framing::tcp, bytes({0x00, 0xe1}), v), FrameError::ok);  // empty CSM
  EXPECT_FALSE(apply_csm(v, settings));
  EXPECT_EQ(settings.max_message_size, 4096u);
  EXPECT_TRUE(settings.block_wise);
  // Unknown elective option 6 is ignored; unknown critical option 7 is named for Bad-CSM-Option.
  ASSERT_EQ(parse_bytes(Framing::tcp, bytes({0x10, 0xe1, 0x60}), v), FrameError::ok);
  EXPECT_FALSE(apply_csm(v, settings));
  ASSERT_EQ(parse_bytes(Framing::tcp, bytes({0x10, 0xe1, 0x70}), v), FrameError::ok);
  EXPECT_EQ(apply_csm(v, settings), std::optional<std::uint16_t>(7));
  // A Max-Message-Size longer than 4 bytes cannot be honoured.
  ASSERT_EQ(parse_bytes(Framing::tcp, bytes({0x60, 0xe1, 0x25, 1, 2, 3, 4, 5}), v), FrameError::ok);
  EXPECT_EQ(apply_csm(v, settings), std::optional<std::uint16_t>(signal::max_message_size));
}

TEST(StreamSignal, PingPongEchoTokenAndCustody) {
  const auto token = bytes({0x12, 0x34});
  EXPECT_EQ(serialize_frame(Framing::tcp, make_ping(token)), bytes({0x02, 0xe2, 0x12, 0x34}));
  EXPECT_EQ(serialize_frame(Framing::tcp, make_pong(token, true)),
            bytes({0x12, 0xe3, 0x12, 0x34, 0x20}));
  EXPECT_EQ(serialize_frame(Framing::websocket, make_pong(token)), bytes({0x02, 0xe3, 0x12, 0x34}));
}

TEST(StreamSignal, ReleaseAndAbort) {
  EXPECT_EQ(serialize_frame(Framing::tcp, make_abort("bad", 3)),
            bytes({0x60, 0xe5, 0x21, 0x03, 0xff, 'b', 'a', 'd'}));
  EXPECT_EQ(serialize_frame(Framing::tcp, make_release("", 60)), bytes({0x20, 0xe4, 0x41, 60}));
  // Release with two Alternative-Addresses and Hold-Off 10, built by hand.
  const auto wire = bytes({0xa0, 0xe4, 0x23, 'a', ':', '1', 0x03, 'b', ':', '2', 0x21, 10});
  MessageView v;
  ASSERT_EQ(parse_bytes(Framing::tcp, wire, v), FrameError::ok);
  EXPECT_FALSE(unknown_critical_signal_option(v));
  const ReleaseInfo info = read_release(v);
  ASSERT_EQ(info.alternative_addresses.size(), 2u);
  EXPECT_EQ(info.alternative_addresses[0], "a:1");
  EXPECT_EQ(info.alternative_addresses[1], "b:2");
  EXPECT_EQ(info.hold_off_seconds, std::optional<std::uint32_t>(10));
  ASSERT_EQ(parse_bytes(Framing::tcp, bytes({0x10, 0xe2, 0x10}), v), FrameError::ok);
  EXPECT_EQ(unknown_critical_signal_option(v), std::optional<std::uint16_t>(1));
}

TEST(StreamFrame, ErrorNamesAreDistinct) {
  EXPECT_EQ(to_string(FrameError::too_large), "too_large");
  EXPECT_EQ(to_string(FrameError::nonzero_length), "nonzero_length");
  EXPECT_NE(to_string(FrameError::too_short), to_string(FrameError::too_long));
}

}  // namespace
}  // namespace coapgw::coap
