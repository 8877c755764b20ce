// StreamConnection tests: a fake peer writes RFC 8323 frames (built with the codec or by hand), a
// fake host records what goes up and out, and a fake clock drives every timeout.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bytes.hpp"
#include "coap/option.hpp"
#include "transport/stream_connection.hpp"

namespace coapgw::transport {
namespace {

using coap::Framing;
using coap::Message;
using coap::test::bytes;
using coap::test::cat;
using coap::test::filled;
using namespace std::chrono_literals;

class FakeHost : public StreamConnection::Host {
 public:
  explicit FakeHost(Framing framing) : framing_(framing) {}
  void deliver(const coap::MessageView& m, StreamTime) override { delivered.push_back(Message::from_view(m)); }
  void send_frame(std::span<const std::byte> frame) override {
    coap::MessageView v;
    ASSERT_EQ(coap::parse_frame(framing_, frame, v), coap::FrameError::ok);
    sent.push_back(Message::from_view(v));
  }
  void established(const coap::Csm& peer) override { peer_csm = peer; }
  void closed(StreamClose reason) override { closes.push_back(reason); }
  void refused(StreamRefusal r) override { refusals.push_back(r); }

  std::string payload_of_last() const { return std::string(coap::as_string(sent.back().payload)); }

  std::vector<Message> delivered;
  std::vector<Message> sent;
  std::optional<coap::Csm> peer_csm;
  std::vector<StreamClose> closes;
  std::vector<StreamRefusal> refusals;

 private:
  Framing framing_;
};

Message get(std::string_view path, std::vector<std::byte> token) {
  Message m;
  m.code = coap::code::get;
  m.token = std::move(token);
  m.add_string_option(coap::option::uri_path, path);
  return m;
}

Message response(std::vector<std::byte> token, std::size_t payload = 0) {
  Message m;
  m.code = coap::code::content;
  m.token = std::move(token);
  m.payload = filled(payload, 'p');
  return m;
}

struct Fixture {
  explicit Fixture(StreamSettings s = {}) : settings(s), host(s.framing), conn(s, host) {}
  std::vector<std::byte> frame(const Message& m) const { return coap::serialize_frame(settings.framing, m); }
  void peer_sends(const Message& m) { feed(frame(m)); }
  void feed(const std::vector<std::byte>& b) {
    if (settings.framing == Framing::websocket)
      conn.on_message(b, now);
    else
      conn.on_bytes(b, now);
  }
  void establish(coap::Csm peer = {}) {
    conn.start(now);
    peer_sends(coap::make_csm(peer));
    ASSERT_EQ(conn.state(), StreamState::established);
  }

  StreamSettings settings;
  StreamTime now = StreamTime{} + 1000s;
  FakeHost host;
  StreamConnection conn;
};

TEST(StreamConnection, StartSendsOurCsmFirst) {
  StreamSettings s;
  s.max_message_size = 4096;
  Fixture f(s);
  EXPECT_EQ(f.conn.state(), StreamState::connecting);
  f.conn.start(f.now);
  EXPECT_EQ(f.conn.state(), StreamState::csm);
  ASSERT_EQ(f.host.sent.size(), 1u);
  EXPECT_EQ(f.host.sent[0].code, coap::signal::csm);
  const auto* mms = f.host.sent[0].find(coap::signal::max_message_size);
  ASSERT_NE(mms, nullptr);
  EXPECT_EQ(coap::decode_uint(mms->value), 4096u);
  EXPECT_EQ(f.host.sent[0].find(coap::signal::block_wise_transfer), nullptr);  // no BERT
}

TEST(StreamConnection, CsmThenRequestInOneReadIsDelivered) {
  Fixture f;
  f.conn.start(f.now);
  f.feed(cat(f.frame(coap::make_csm({2048, true})), f.frame(get("a", bytes({7})))));
  EXPECT_EQ(f.conn.state(), StreamState::established);
  ASSERT_TRUE(f.host.peer_csm);
  EXPECT_EQ(f.host.peer_csm->max_message_size, 2048u);
  EXPECT_TRUE(f.host.peer_csm->block_wise);
  ASSERT_EQ(f.host.delivered.size(), 1u);
  EXPECT_EQ(f.host.delivered[0].code, coap::code::get);
  EXPECT_EQ(f.host.delivered[0].token, bytes({7}));
  EXPECT_EQ(f.conn.in_flight(), 1u);
  EXPECT_TRUE(f.host.closes.empty());
}

TEST(StreamConnection, FramesSplitAtEveryByteAreReassembled) {
  Fixture f;
  f.conn.start(f.now);
  Message big = response(bytes({1, 2}), 400);  // 16-bit extended length
  const auto stream = cat(cat(f.frame(coap::make_csm({})), f.frame(get("x", bytes({9})))), f.frame(big));
  for (std::byte b : stream) f.conn.on_bytes(std::span(&b, 1), f.now);
  ASSERT_EQ(f.host.delivered.size(), 2u);
  EXPECT_EQ(f.host.delivered[0].token, bytes({9}));
  EXPECT_EQ(f.host.delivered[1].payload.size(), 400u);
  EXPECT_EQ(f.conn.buffered(), 0u);
  EXPECT_FALSE(f.conn.next_deadline());  // no partial-frame deadline left behind; a request waits
}

TEST(StreamConnection, RequestBeforeCsmAborts) {
  Fixture f;
  f.conn.start(f.now);
  f.peer_sends(get("a", {}));
  EXPECT_EQ(f.conn.state(), StreamState::closed);
  ASSERT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::csm_expected});
  EXPECT_EQ(f.host.sent.back().code, coap::signal::abort);
  EXPECT_EQ(f.host.payload_of_last(), "CSM expected first");
  EXPECT_TRUE(f.host.delivered.empty());
  // A ping before CSM is no better; and nothing happens after closing.
  f.peer_sends(coap::make_csm({}));
  f.conn.on_end_of_stream();
  EXPECT_EQ(f.host.closes.size(), 1u);
}

TEST(StreamConnection, EmptyMessagesAreIgnoredEvenBeforeCsm) {
  Fixture f;
  f.conn.start(f.now);
  f.feed(bytes({0x00, 0x00}));
  EXPECT_EQ(f.conn.state(), StreamState::csm);
  EXPECT_TRUE(f.host.closes.empty());
}

TEST(StreamConnection, PingIsAnsweredWithPongEchoingTokenAndCustody) {
  Fixture f;
  f.establish();
  f.peer_sends(coap::make_ping(bytes({0xab}), true));
  ASSERT_EQ(f.host.sent.size(), 2u);
  EXPECT_EQ(f.host.sent[1].code, coap::signal::pong);
  EXPECT_EQ(f.host.sent[1].token, bytes({0xab}));
  EXPECT_NE(f.host.sent[1].find(coap::signal::custody), nullptr);
  f.peer_sends(coap::make_ping({}));
  EXPECT_EQ(f.host.sent[2].find(coap::signal::custody), nullptr);
}

TEST(StreamConnection, MalformedFrameAbortsWithItsReason) {
  Fixture f;
  f.establish();
  f.feed(bytes({0x10, 0x01, 0xf0}));  // GET whose only option byte has a reserved nibble
  ASSERT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::malformed_frame});
  EXPECT_EQ(f.host.sent.back().code, coap::signal::abort);
  EXPECT_EQ(f.host.payload_of_last(), "malformed frame: reserved_nibble");
}

TEST(StreamConnection, BadTokenLengthAbortsOnTheHeaderAlone) {
  Fixture f;
  f.establish();
  f.feed(bytes({0x0c}));  // TKL 12: known bad before Code or token arrive
  ASSERT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::malformed_frame});
  EXPECT_EQ(f.host.payload_of_last(), "malformed frame: bad_token_length");
}

TEST(StreamConnection, OversizedFrameAbortsBeforeAnythingIsBuffered) {
  StreamSettings s;
  s.max_message_size = 64;
  Fixture f(s);
  f.establish();
  f.feed(bytes({0xe0, 0x10}));  // Len 14: length still unknown
  EXPECT_EQ(f.conn.buffered(), 2u);
  f.feed(bytes({0x00}));  // body 269 + 4096 bytes announced
  ASSERT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::message_too_large});
  EXPECT_EQ(f.host.payload_of_last(), "message too large: 4369 > 64");
  // Exactly the limit is accepted.
  Fixture g(s);
  g.establish();
  g.peer_sends(response({}, 64 - 4));  // 2-byte header with Len 13 extension = 3, marker 1
  EXPECT_EQ(g.host.delivered.size(), 1u);
  EXPECT_TRUE(g.host.closes.empty());
}

TEST(StreamConnection, UnsupportedCsmOptionIsNamedInAbort) {
  Fixture f;
  f.conn.start(f.now);
  f.feed(bytes({0x10, 0xe1, 0x70}));  // CSM with critical option 7
  ASSERT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::bad_csm_option});
  const Message& abort = f.host.sent.back();
  EXPECT_EQ(abort.code, coap::signal::abort);
  const auto* bad = abort.find(coap::signal::bad_csm_option);
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(coap::decode_uint(bad->value), 7u);
}

TEST(StreamConnection, UnknownCriticalSignalOptionAborts) {
  Fixture f;
  f.establish();
  f.feed(bytes({0x10, 0xe2, 0x10}));  // Ping with option 1
  EXPECT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::bad_signal_option});
}

TEST(StreamConnection, CsmTimeout) {
  StreamSettings s;
  s.csm_timeout = 10s;
  Fixture f(s);
  f.conn.start(f.now);
  EXPECT_EQ(f.conn.next_deadline(), f.now + 10s);
  f.conn.on_tick(f.now + 9s);
  EXPECT_TRUE(f.host.closes.empty());
  f.conn.on_tick(f.now + 10s);
  EXPECT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::csm_timeout});
  EXPECT_EQ(f.host.payload_of_last(), "CSM timeout");
  EXPECT_FALSE(f.conn.next_deadline());
}

TEST(StreamConnection, SlowLorisFrameTimesOutFromItsFirstByte) {
  StreamSettings s;
  s.frame_timeout = 10s;
  Fixture f(s);
  f.establish();
  const auto frame = f.frame(get("slow", bytes({1})));
  f.conn.on_bytes(std::span(frame).first(2), f.now);
  EXPECT_EQ(f.conn.next_deadline(), f.now + 10s);
  f.conn.on_bytes(std::span(frame).subspan(2, 1), f.now + 5s);  // a trickle does not extend it
  EXPECT_EQ(f.conn.next_deadline(), f.now + 10s);
  f.conn.on_tick(f.now + 10s);
  EXPECT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::frame_timeout});
  EXPECT_TRUE(f.host.delivered.empty());
}

TEST(StreamConnection, IdleConnectionIsReleasedButNotWhileARequestWaits) {
  StreamSettings s;
  s.idle_timeout = 60s;
  Fixture f(s);
  f.establish();
  f.peer_sends(get("a", bytes({1})));
  EXPECT_FALSE(f.conn.next_deadline());  // waiting for our answer is not idleness
  f.conn.on_tick(f.now + 120s);
  EXPECT_TRUE(f.host.closes.empty());
  const StreamTime answered_at = f.now + 120s;
  ASSERT_EQ(f.conn.send(response(bytes({1}))), StreamConnection::SendResult::sent);
  f.now = answered_at;
  f.peer_sends(coap::make_ping({}));  // traffic at answered_at
  EXPECT_EQ(f.conn.next_deadline(), answered_at + 60s);
  f.conn.on_tick(answered_at + 59s);
  EXPECT_TRUE(f.host.closes.empty());
  f.conn.on_tick(answered_at + 60s);
  EXPECT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::idle_timeout});
  EXPECT_EQ(f.host.sent.back().code, coap::signal::release);
}

TEST(StreamConnection, RequestsOverTheInFlightBoundAreAnswered503) {
  StreamSettings s;
  s.max_in_flight = 2;
  Fixture f(s);
  f.establish();
  f.peer_sends(get("a", bytes({1})));
  f.peer_sends(get("b", bytes({2})));
  f.peer_sends(get("c", bytes({3})));
  EXPECT_EQ(f.host.delivered.size(), 2u);
  EXPECT_EQ(f.host.sent.back().code, coap::code::service_unavailable);
  EXPECT_EQ(f.host.sent.back().token, bytes({3}));
  EXPECT_EQ(f.host.refusals, std::vector<StreamRefusal>{StreamRefusal::too_many_in_flight});
  // Answering one frees its place; a notification-like second answer frees nothing more.
  f.conn.send(response(bytes({1})));
  f.conn.send(response(bytes({1})));
  EXPECT_EQ(f.conn.in_flight(), 1u);
  f.peer_sends(get("d", bytes({4})));
  EXPECT_EQ(f.host.delivered.size(), 3u);
  EXPECT_TRUE(f.host.closes.empty());
}

TEST(StreamConnection, SendHonoursThePeersMaxMessageSize) {
  Fixture f;
  f.establish({64, false});
  EXPECT_EQ(f.conn.send(response(bytes({1}), 100)), StreamConnection::SendResult::too_large_for_peer);
  EXPECT_EQ(f.conn.send(response(bytes({1}), 10)), StreamConnection::SendResult::sent);
  Message signal = coap::make_ping({});
  EXPECT_EQ(f.conn.send(signal), StreamConnection::SendResult::cannot_encode);
  EXPECT_EQ(f.host.refusals,
            (std::vector<StreamRefusal>{StreamRefusal::too_large_for_peer, StreamRefusal::cannot_encode}));
  Fixture closed;
  EXPECT_EQ(closed.conn.send(response({})), StreamConnection::SendResult::not_open);
}

TEST(StreamConnection, PeerReleaseClosesOnceAnswered) {
  Fixture f;
  f.establish();
  f.peer_sends(get("a", bytes({5})));
  f.peer_sends(coap::make_release("bye"));
  EXPECT_EQ(f.conn.state(), StreamState::closing);
  EXPECT_TRUE(f.host.closes.empty());
  f.conn.send(response(bytes({5})));
  EXPECT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::peer_release});
  EXPECT_EQ(f.host.sent.back().code, coap::code::content);  // the answer went out before closing
}

TEST(StreamConnection, PeerAbortClosesWithoutAnswer) {
  Fixture f;
  f.establish();
  const std::size_t sent = f.host.sent.size();
  f.peer_sends(coap::make_abort("gone"));
  EXPECT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::peer_abort});
  EXPECT_EQ(f.host.sent.size(), sent);
}

TEST(StreamConnection, OurReleaseWaitsForThePeerThenCloses) {
  StreamSettings s;
  s.release_timeout = 5s;
  Fixture f(s);
  f.establish();
  f.conn.release("shutting down", f.now);
  EXPECT_EQ(f.host.sent.back().code, coap::signal::release);
  EXPECT_EQ(f.host.payload_of_last(), "shutting down");
  EXPECT_EQ(f.conn.state(), StreamState::closing);
  f.peer_sends(response({}));  // late answers still arrive
  EXPECT_EQ(f.host.delivered.size(), 1u);
  f.conn.on_tick(f.now + 5s);
  EXPECT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::released});

  Fixture g(s);
  g.establish();
  g.conn.release("", g.now);
  g.conn.on_end_of_stream();
  EXPECT_EQ(g.host.closes, std::vector<StreamClose>{StreamClose::peer_closed});
}

TEST(StreamConnection, UnknownSignalIsCountedAndIgnored) {
  Fixture f;
  f.establish();
  f.feed(bytes({0x00, 0xe6}));  // 7.06
  EXPECT_EQ(f.host.refusals, std::vector<StreamRefusal>{StreamRefusal::unknown_signal});
  EXPECT_EQ(f.conn.state(), StreamState::established);
}

TEST(StreamConnection, DriverAbortSendsDiagnostic) {
  Fixture f;
  f.establish();
  f.conn.abort("write queue full");
  EXPECT_EQ(f.host.payload_of_last(), "write queue full");
  EXPECT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::aborted});
}

TEST(StreamConnection, WebSocketMessagesAreWholeFrames) {
  StreamSettings s;
  s.framing = Framing::websocket;
  Fixture f(s);
  f.conn.start(f.now);
  EXPECT_EQ(f.conn.next_deadline(), f.now + s.csm_timeout);
  f.feed(bytes({0x00, 0xe1}));                       // CSM, Len 0
  f.feed(bytes({0x01, 0x01, 0xaa, 0xb1, 'w'}));      // GET /w, token aa
  ASSERT_EQ(f.host.delivered.size(), 1u);
  EXPECT_EQ(coap::serialize_frame(Framing::websocket, f.host.delivered[0]),
            bytes({0x01, 0x01, 0xaa, 0xb1, 'w'}));
  f.feed(bytes({0x21, 0x01, 0xaa, 0xb1, 'w'}));      // a TCP length in a WebSocket frame
  EXPECT_EQ(f.host.closes, std::vector<StreamClose>{StreamClose::malformed_frame});
  EXPECT_EQ(f.host.payload_of_last(), "malformed frame: nonzero_length");
}

TEST(StreamConnection, NamesAreStable) {
  EXPECT_EQ(to_string(StreamState::csm), "csm");
  EXPECT_EQ(to_string(StreamClose::frame_timeout), "frame_timeout");
  EXPECT_EQ(to_string(StreamRefusal::too_many_in_flight), "too_many_in_flight");
}

}  // namespace
}  // namespace coapgw::transport
