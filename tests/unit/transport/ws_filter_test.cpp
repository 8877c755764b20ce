// WsFilter (RFC 6455 for RFC 8323 §4) driven with bytes only: the upgrade and its refusals, masked
// binary messages whole and fragmented, Ping/Pong, Close, and what fails the connection.
#include <gtest/gtest.h>

#include <string>

#include "transport/ws_filter.hpp"

namespace coapgw::transport {
namespace {

std::vector<std::byte> bytes(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}
std::string text(const std::vector<std::byte>& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

std::string upgrade_request(std::string_view path = "/.well-known/coap", std::string_view protocol = "coap") {
  return "GET " + std::string(path) +
         " HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Protocol: " + std::string(protocol) + "\r\n\r\n";
}

// A client frame (masked, as RFC 6455 §5.3 requires of clients).
std::vector<std::byte> client_frame(std::uint8_t opcode, std::string_view payload, bool fin = true, bool masked = true) {
  std::vector<std::byte> f{std::byte{static_cast<std::uint8_t>((fin ? 0x80 : 0) | opcode)}};
  const std::uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    f.push_back(std::byte{static_cast<std::uint8_t>(mask_bit | payload.size())});
  } else {
    f.push_back(std::byte{static_cast<std::uint8_t>(mask_bit | 126)});
    f.push_back(std::byte{static_cast<std::uint8_t>(payload.size() >> 8)});
    f.push_back(std::byte{static_cast<std::uint8_t>(payload.size())});
  }
  const std::uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked)
    for (auto k : key) f.push_back(std::byte{k});
  for (std::size_t i = 0; i < payload.size(); ++i)
    f.push_back(std::byte{static_cast<std::uint8_t>(payload[i] ^ (masked ? key[i % 4] : 0))});
  return f;
}

struct Ws {
  WsFilter filter{1152};
  std::vector<std::vector<std::byte>> messages;
  std::vector<std::byte> out;
  WsFilter::Status feed(const std::vector<std::byte>& in) { return filter.on_bytes(in, messages, out); }
  WsFilter::Status feed(std::string_view in) { return feed(bytes(in)); }
  void open() {
    ASSERT_EQ(feed(upgrade_request()), WsFilter::Status::open);
    out.clear();
  }
};

TEST(WsFilter, UpgradeAnswersWithTheRfcAcceptKeyAndTheCoapSubprotocol) {
  Ws ws;
  const auto request = upgrade_request();
  // Split anywhere: nothing is answered before the request is whole.
  EXPECT_EQ(ws.feed(request.substr(0, 40)), WsFilter::Status::upgrading);
  EXPECT_TRUE(ws.out.empty());
  EXPECT_EQ(ws.feed(request.substr(40)), WsFilter::Status::open);
  const std::string answer = text(ws.out);
  EXPECT_EQ(answer.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), std::string::npos);  // RFC 6455 §1.3
  EXPECT_NE(answer.find("Sec-WebSocket-Protocol: coap\r\n"), std::string::npos);
}

TEST(WsFilter, UpgradeRefusedOffThePathOrWithoutTheSubprotocol) {
  Ws elsewhere;
  EXPECT_EQ(elsewhere.feed(upgrade_request("/other")), WsFilter::Status::failed);
  EXPECT_EQ(text(elsewhere.out).rfind("HTTP/1.1 404", 0), 0u);
  Ws no_coap;
  EXPECT_EQ(no_coap.feed(upgrade_request("/.well-known/coap", "mqtt, chat")), WsFilter::Status::failed);
  EXPECT_EQ(text(no_coap.out).rfind("HTTP/1.1 400", 0), 0u);
  Ws listed;  // `coap` among others is fine
  EXPECT_EQ(listed.feed(upgrade_request("/.well-known/coap", "chat, coap")), WsFilter::Status::open);
  Ws garbage;
  EXPECT_EQ(garbage.feed("\x16\x03\x01 not http\r\n\r\n"), WsFilter::Status::failed);
  Ws endless;  // headers that never end: bounded
  EXPECT_EQ(endless.feed("GET /.well-known/coap HTTP/1.1\r\nX: " + std::string(WsFilter::max_upgrade_request, 'a')),
            WsFilter::Status::failed);
}

TEST(WsFilter, BinaryMessagesWholeFragmentedAndSplitAcrossReads) {
  Ws ws;
  ws.open();
  auto one = client_frame(0x2, "abc");
  auto first = client_frame(0x2, "de", false), last = client_frame(0x0, "f");
  std::vector<std::byte> all = one;
  all.insert(all.end(), first.begin(), first.end());
  all.insert(all.end(), last.begin(), last.end());
  for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(ws.feed(std::vector<std::byte>{all[i]}), WsFilter::Status::open);
  ASSERT_EQ(ws.messages.size(), 2u);
  EXPECT_EQ(text(ws.messages[0]), "abc");
  EXPECT_EQ(text(ws.messages[1]), "def");
  // Ours go out unmasked, one frame per message.
  std::vector<std::byte> out;
  ASSERT_TRUE(ws.filter.write(bytes("xyz"), out));
  EXPECT_EQ(text(out), std::string("\x82\x03xyz", 5));
}

TEST(WsFilter, PingIsAnsweredAndCloseIsEchoed) {
  Ws ws;
  ws.open();
  EXPECT_EQ(ws.feed(client_frame(0x9, "hi")), WsFilter::Status::open);
  EXPECT_EQ(text(ws.out), std::string("\x8a\x02hi", 4));
  ws.out.clear();
  EXPECT_EQ(ws.feed(client_frame(0x8, std::string("\x03\xe8", 2))), WsFilter::Status::closed);
  EXPECT_EQ(text(ws.out), std::string("\x88\x02\x03\xe8", 4));
  std::vector<std::byte> out;
  EXPECT_FALSE(ws.filter.write(bytes("late"), out));
}

TEST(WsFilter, TextUnmaskedOversizeAndBadSequencesFailWithAClose) {
  auto fails = [](const std::vector<std::byte>& frame, std::uint16_t code) {
    Ws ws;
    ws.open();
    EXPECT_EQ(ws.feed(frame), WsFilter::Status::failed);
    ASSERT_GE(ws.out.size(), 4u);
    EXPECT_EQ(std::to_integer<int>(ws.out[0]), 0x88);
    EXPECT_EQ(std::to_integer<int>(ws.out[2]) << 8 | std::to_integer<int>(ws.out[3]), code);
  };
  fails(client_frame(0x1, "text"), 1003);                     // RFC 8323 §4: binary only
  fails(client_frame(0x2, "x", true, false), 1002);           // a client frame must be masked
  fails(client_frame(0x2, std::string(1200, 'x')), 1009);     // over the message size
  fails(client_frame(0x0, "orphan"), 1002);                   // continuation without a start
  fails(client_frame(0x9, "x", false), 1002);                 // fragmented control frame
  fails(client_frame(0x3, "x"), 1002);                        // reserved opcode
  // A 64-bit length of 2^64-1 (found by fuzz_ws_filter: it wrapped the size check and threw).
  std::vector<std::byte> huge{std::byte{0x82}, std::byte{0xFF}};
  for (int i = 0; i < 8; ++i) huge.push_back(std::byte{0xFF});
  for (int i = 0; i < 8; ++i) huge.push_back(std::byte{0});
  fails(huge, 1009);
}

}  // namespace
}  // namespace coapgw::transport
