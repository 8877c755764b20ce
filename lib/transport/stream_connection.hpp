// coapgw::transport::StreamConnection — one CoAP-over-TCP/TLS/WebSocket connection (RFC 8323) as a
// pure state machine: bytes in, whole CoAP messages up, frames out.
//
// It owns what RFC 8323 asks of a connection and nothing of sockets or time: cutting the byte stream
// into frames (coap/stream_frame.hpp) with at most one partial frame buffered, the CSM exchange (ours
// first, the peer's before anything else: the `csm` state), Ping/Pong, Release and Abort in both
// directions, the peer's Max-Message-Size for what we send, and the bounds of one connection:
// message size, requests in flight, CSM, slow-loris and idle timeouts. Every refusal is a value the
// Host counts, and every protocol error ends in Abort with a diagnostic payload and Host::closed(),
// never anything worse. The driver (a socket, a TLS stream, a WebSocket) feeds bytes or WebSocket
// messages, sends what the Host is given, arms a timer at next_deadline() and calls on_tick(); the
// clock is the `now` each call passes. Requests and responses go up through Host::deliver; what to
// do with them (exchanges, routes, sessions) is the message layer's business, not this class's.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "coap/stream_frame.hpp"

namespace coapgw::transport {

using StreamClock = std::chrono::steady_clock;
using StreamTime = StreamClock::time_point;

// The session states of DESIGN.md, for this connection: connecting until start() (TCP accepted but
// TLS handshake or WebSocket upgrade not done), csm until the peer's CSM, established, closing
// (Release sent or received, waiting for answers or for the peer to close), closed (Host::closed
// was called; the connection does nothing more).
enum class StreamState : std::uint8_t { connecting, csm, established, closing, closed };
std::string_view to_string(StreamState state);

// Why a connection ended (Host::closed), one value per counted reason.
enum class StreamClose : std::uint8_t {
  malformed_frame,        // the frame did not parse: Abort "malformed frame: <reason>"
  message_too_large,      // a frame over our Max-Message-Size (settings.max_message_size): Abort
  csm_expected,           // the peer's first message was not a CSM: Abort
  bad_csm_option,         // a CSM option we cannot honour: Abort with Bad-CSM-Option
  bad_signal_option,      // an unknown critical option in Ping/Pong/Release/Abort: Abort
  csm_timeout,            // no CSM within settings.csm_timeout: Abort
  frame_timeout,          // a frame begun and not finished within settings.frame_timeout: Abort
  idle_timeout,           // no message within settings.idle_timeout: Release, then closed
  peer_release,           // the peer sent Release and nothing is left to answer
  peer_abort,             // the peer sent Abort
  peer_closed,            // end of stream from the peer (on_end_of_stream)
  released,               // we sent Release (release()) and the peer did not close in time
  aborted,                // we aborted (abort()), e.g. the driver's own bounds
  tls_failed,             // the TLS handshake or a TLS record failed (end(), no Abort: no channel)
  handshake_timeout,      // the TLS handshake or WebSocket upgrade did not finish in time (end())
  upgrade_failed,         // the WebSocket upgrade request was refused (end(): 400/404 answered)
};
std::string_view to_string(StreamClose reason);

// What the connection refused while staying open, one value per counted reason.
enum class StreamRefusal : std::uint8_t {
  too_many_in_flight,   // a request over settings.max_in_flight: answered 5.03 here
  too_large_for_peer,   // send(): the frame exceeds the peer's Max-Message-Size
  cannot_encode,        // send(): token > 8, a signalling code, or options the codec refuses
  not_open,             // send() before start() or after closed
  unknown_signal,       // a 7.xx code RFC 8323 does not define: ignored
};
std::string_view to_string(StreamRefusal refusal);

struct StreamSettings {
  coap::Framing framing = coap::Framing::tcp;
  // Largest frame we accept (coap.max_message_size); sent as Max-Message-Size in our CSM.
  std::size_t max_message_size = coap::default_max_message_size;
  std::size_t max_in_flight = 32;  // requests delivered and not yet answered
  std::chrono::milliseconds csm_timeout{10000};
  std::chrono::milliseconds frame_timeout{10000};   // slow loris: one frame must arrive within this
  std::chrono::milliseconds idle_timeout{300000};   // sessions.idle_timeout
  std::chrono::milliseconds release_timeout{5000};  // after our Release, before we close ourselves
};

class StreamConnection {
 public:
  // What the connection needs from the driver and the message layer above it.
  class Host {
   public:
    virtual ~Host() = default;
    // A request or response (never a signal, never Empty). The view points into the connection's
    // buffer or the caller's bytes and is valid only during the call.
    virtual void deliver(const coap::MessageView& message, StreamTime now) = 0;
    // One whole frame to write, in order (over WebSockets: one binary message).
    virtual void send_frame(std::span<const std::byte> frame) = 0;
    // The peer's CSM arrived: the session goes csm -> established.
    virtual void established(const coap::Csm& peer) { (void)peer; }
    // The connection is over (any frame before this is still to be written): close the transport
    // after writing. Called exactly once.
    virtual void closed(StreamClose reason) = 0;
    virtual void refused(StreamRefusal refusal) = 0;
  };

  enum class SendResult : std::uint8_t { sent, too_large_for_peer, cannot_encode, not_open };

  StreamConnection(StreamSettings settings, Host& host);

  // The transport is ready (TCP accepted, TLS handshake done, WebSocket upgraded): sends our CSM and
  // starts the CSM timeout. State connecting -> csm.
  void start(StreamTime now);
  // Bytes read from a TCP or TLS stream (Framing::tcp), any split.
  void on_bytes(std::span<const std::byte> bytes, StreamTime now);
  // One WebSocket binary message (Framing::websocket).
  void on_message(std::span<const std::byte> frame, StreamTime now);
  // The peer closed its side.
  void on_end_of_stream();
  // Timeouts that are due at `now`.
  void on_tick(StreamTime now);
  // When on_tick next has something to do; nullopt when closed or nothing is pending.
  std::optional<StreamTime> next_deadline() const;

  // A request or response from the message layer. Responses whose token answers a delivered request
  // free its place in flight.
  SendResult send(const coap::Message& message);
  // A Ping (keep-alive): the peer answers with Pong, which counts as traffic.
  SendResult ping(std::span<const std::byte> token);
  // Orderly end (drain, or idle): Release with a diagnostic, state closing; closed(released) when the
  // peer has not closed within release_timeout.
  void release(std::string_view diagnostic, StreamTime now);
  // Abort with a diagnostic and closed(aborted) (the driver's own bounds: slow reader, write queue).
  void abort(std::string_view diagnostic);
  // The transport under the connection failed (TLS): closed(reason) without any frame.
  void end(StreamClose reason);

  StreamState state() const { return state_; }
  const coap::Csm& peer_csm() const { return peer_; }
  std::size_t in_flight() const { return in_flight_.size(); }
  std::size_t buffered() const { return buffer_.size(); }  // bytes of a partial frame held

 private:
  void process_stream(std::span<const std::byte> bytes, StreamTime now);
  void on_frame(std::span<const std::byte> frame, StreamTime now);
  void on_signal(const coap::MessageView& message);
  void on_request(const coap::MessageView& message, StreamTime now);
  bool send_raw(const coap::Message& message);
  void fail(StreamClose reason, std::string_view diagnostic, std::optional<std::uint16_t> bad_csm = {});
  void finish(StreamClose reason);
  bool open() const { return state_ != StreamState::connecting && state_ != StreamState::closed; }
  void answered(std::span<const std::byte> token);

  StreamSettings settings_;
  Host& host_;
  StreamState state_ = StreamState::connecting;
  coap::Csm peer_;
  std::vector<std::byte> buffer_;                       // one partial frame, at most max_message_size
  std::vector<std::vector<std::byte>> in_flight_;       // tokens of delivered requests
  std::optional<StreamTime> csm_deadline_;
  std::optional<StreamTime> frame_deadline_;            // set while a frame is partial
  std::optional<StreamTime> release_deadline_;
  StreamTime last_activity_{};
  bool peer_released_ = false;
};

}  // namespace coapgw::transport
