// libFuzzer target for the RFC 8323 stream framing (lib/coap/stream_frame).
//
// The first input byte picks the framing, the rest is the frame. Any frame that parses must
// survive Message -> serialize_frame -> parse_frame with identical bytes (the Len and option
// encodings are unique), and for TCP its extent must name exactly its size. The same bytes are
// also cut as a TCP stream, frame by frame through tcp_frame_extent, as a connection would, and
// every signalling helper runs on what parses. Finally the bytes go, in pieces whose sizes the input
// picks, through a StreamConnection (lib/transport) whose host answers every request: whatever the
// peer sends, the connection must end at most once, never buffer more than its Max-Message-Size,
// and send only frames that parse. Violations abort() so libFuzzer records a crash.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fuzz_check.hpp"
#include "coap/option.hpp"
#include "coap/stream_frame.hpp"
#include "transport/stream_connection.hpp"

namespace {

using namespace coapgw::coap;

using coapgw::fuzz::same;

void check_signal(const MessageView& v) {
  if (!is_signal(v.code)) return;
  Csm csm;
  if (const auto bad = apply_csm(v, csm)) FUZZ_CHECK(v.find(*bad) != nullptr);
  (void)read_release(v);
  if (const auto bad = unknown_critical_signal_option(v)) FUZZ_CHECK(is_critical(*bad));
}

void check_frame(Framing framing, std::span<const std::byte> frame) {
  MessageView v;
  const FrameError err = parse_frame(framing, frame, v);
  FUZZ_CHECK(!to_string(err).empty());
  if (err != FrameError::ok) return;
  FUZZ_CHECK(parse_frame(framing, frame, v, frame.size() - 1) == FrameError::too_large);
  FUZZ_CHECK(parse_frame(framing, frame, v) == FrameError::ok);
  if (framing == Framing::tcp) {
    const auto extent = tcp_frame_extent(frame);
    FUZZ_CHECK(extent && extent->frame_size == frame.size() && extent->token_length == v.token.size());
  }
  check_signal(v);
  const Message m = Message::from_view(v);
  if (is_empty(m.code) && (!m.options.empty() || !m.payload.empty())) {
    FUZZ_CHECK(frame_size(framing, m) == 0);  // an Empty message carries nothing (RFC 7252 §4.1)
    return;
  }
  const std::vector<std::byte> wire = serialize_frame(framing, m);
  FUZZ_CHECK(wire.size() == frame_size(framing, m));
  FUZZ_CHECK(same(wire, frame));
  std::vector<std::byte> small(wire.size() - 1);
  FUZZ_CHECK(serialize_frame(framing, m, small) == 0);
}

// Cuts the bytes into frames as a connection's read loop would.
void check_stream(std::span<const std::byte> stream) {
  while (!stream.empty()) {
    const auto extent = tcp_frame_extent(stream);
    if (!extent) {
      FUZZ_CHECK(stream.size() < max_frame_header_size);
      return;
    }
    FUZZ_CHECK(extent->frame_size >= extent->header_size);
    if (extent->frame_size > stream.size()) return;
    const auto frame = stream.first(static_cast<std::size_t>(extent->frame_size));
    MessageView v;
    const FrameError err = parse_frame(Framing::tcp, frame, v);
    FUZZ_CHECK(err != FrameError::too_long && err != FrameError::nonzero_length);
    stream = stream.subspan(frame.size());
  }
}

class Host : public coapgw::transport::StreamConnection::Host {
 public:
  coapgw::transport::StreamConnection* conn = nullptr;
  int closes = 0;
  void deliver(const MessageView& m, coapgw::transport::StreamTime) override {
    FUZZ_CHECK(is_request(m.code) || is_response(m.code));
    if (!is_request(m.code)) return;
    Message answer;
    answer.code = code::content;
    answer.token.assign(m.token.begin(), m.token.end());
    answer.payload.assign(m.payload.begin(), m.payload.end());  // may exceed the peer's size
    (void)conn->send(answer);
  }
  void send_frame(std::span<const std::byte> frame) override {
    MessageView v;
    FUZZ_CHECK(parse_frame(Framing::tcp, frame, v) == FrameError::ok);
  }
  void closed(coapgw::transport::StreamClose) override { ++closes; }
  void refused(coapgw::transport::StreamRefusal) override {}
};

void check_connection(std::span<const std::byte> stream, std::uint8_t split) {
  using namespace coapgw::transport;
  StreamSettings settings;
  settings.max_message_size = 256;
  settings.max_in_flight = 2;
  Host host;
  StreamConnection conn(settings, host);
  host.conn = &conn;
  StreamTime now{};
  conn.start(now);
  const std::size_t piece = 1 + split % 17;
  while (!stream.empty()) {
    const auto chunk = stream.first(std::min(piece, stream.size()));
    stream = stream.subspan(chunk.size());
    now += std::chrono::milliseconds(split);
    conn.on_bytes(chunk, now);
    FUZZ_CHECK(conn.buffered() <= settings.max_message_size);
    if (const auto next = conn.next_deadline(); next && (split & 0x80)) conn.on_tick(*next);
  }
  conn.on_end_of_stream();
  FUZZ_CHECK(host.closes == 1 && conn.state() == StreamState::closed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  const Framing framing = (data[0] & 1) ? Framing::websocket : Framing::tcp;
  check_frame(framing, input);
  check_stream(input);
  check_connection(input, data[0]);
  return 0;
}
