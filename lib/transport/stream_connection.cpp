// RFC 8323 §3-§5 connection behaviour over the pure framing of coap/stream_frame.
#include "transport/stream_connection.hpp"

#include <algorithm>
#include <string>

namespace coapgw::transport {
namespace {

// Bytes of a §3.2 header needed to know the frame's length: Len/TKL plus the extended length.
std::size_t length_prefix_size(std::byte first) {
  const unsigned nibble = std::to_integer<unsigned>(first) >> 4;
  return 1 + (nibble < 13 ? 0 : nibble == 13 ? 1 : nibble == 14 ? 2 : 4);
}

std::optional<StreamTime> earliest(std::optional<StreamTime> a, std::optional<StreamTime> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

}  // namespace

std::string_view to_string(StreamState state) {
  switch (state) {
    case StreamState::connecting: return "connecting";
    case StreamState::csm: return "csm";
    case StreamState::established: return "established";
    case StreamState::closing: return "closing";
    case StreamState::closed: return "closed";
  }
  return "unknown";
}

std::string_view to_string(StreamClose reason) {
  switch (reason) {
    case StreamClose::malformed_frame: return "malformed_frame";
    case StreamClose::message_too_large: return "message_too_large";
    case StreamClose::csm_expected: return "csm_expected";
    case StreamClose::bad_csm_option: return "bad_csm_option";
    case StreamClose::bad_signal_option: return "bad_signal_option";
    case StreamClose::csm_timeout: return "csm_timeout";
    case StreamClose::frame_timeout: return "frame_timeout";
    case StreamClose::idle_timeout: return "idle_timeout";
    case StreamClose::peer_release: return "peer_release";
    case StreamClose::peer_abort: return "peer_abort";
    case StreamClose::peer_closed: return "peer_closed";
    case StreamClose::released: return "released";
    case StreamClose::aborted: return "aborted";
    case StreamClose::tls_failed: return "tls_failed";
    case StreamClose::handshake_timeout: return "handshake_timeout";
    case StreamClose::upgrade_failed: return "upgrade_failed";
  }
  return "unknown";
}

std::string_view to_string(StreamRefusal refusal) {
  switch (refusal) {
    case StreamRefusal::too_many_in_flight: return "too_many_in_flight";
    case StreamRefusal::too_large_for_peer: return "too_large_for_peer";
    case StreamRefusal::cannot_encode: return "cannot_encode";
    case StreamRefusal::not_open: return "not_open";
    case StreamRefusal::unknown_signal: return "unknown_signal";
  }
  return "unknown";
}

StreamConnection::StreamConnection(StreamSettings settings, Host& host)
    : settings_(settings), host_(host) {}

void StreamConnection::start(StreamTime now) {
  if (state_ != StreamState::connecting) return;
  state_ = StreamState::csm;
  last_activity_ = now;
  csm_deadline_ = now + settings_.csm_timeout;
  // §3.3: the CSM is our first message; we do not wait for the peer's (that could deadlock).
  coap::Csm ours;
  ours.max_message_size = static_cast<std::uint32_t>(settings_.max_message_size);
  send_raw(coap::make_csm(ours));
}

void StreamConnection::on_bytes(std::span<const std::byte> bytes, StreamTime now) {
  if (!open() || bytes.empty()) return;
  if (settings_.framing == coap::Framing::websocket) {
    on_message(bytes, now);
    return;
  }
  process_stream(bytes, now);
}

void StreamConnection::on_message(std::span<const std::byte> frame, StreamTime now) {
  if (!open()) return;
  on_frame(frame, now);
}

// Cuts `bytes` into frames. Whole frames are parsed where they lie; only a frame split across reads
// is copied, and its extent is checked against the limits before anything is buffered.
void StreamConnection::process_stream(std::span<const std::byte> bytes, StreamTime now) {
  while (state_ != StreamState::closed) {
    const std::span<const std::byte> head = buffer_.empty() ? bytes : std::span<const std::byte>(buffer_);
    if (head.empty()) return;
    const auto extent = coap::tcp_frame_extent(head);
    if (extent) {
      if (extent->frame_size > settings_.max_message_size) {
        fail(StreamClose::message_too_large,
             "message too large: " + std::to_string(extent->frame_size) + " > " +
                 std::to_string(settings_.max_message_size));
        return;
      }
      if (extent->token_length > coap::max_token_length) {
        fail(StreamClose::malformed_frame, "malformed frame: bad_token_length");
        return;
      }
    }
    if (bytes.empty()) return;
    if (buffer_.empty()) {
      if (extent && extent->frame_size <= bytes.size()) {
        const auto frame = bytes.first(static_cast<std::size_t>(extent->frame_size));
        bytes = bytes.subspan(frame.size());
        on_frame(frame, now);
        continue;
      }
      if (!frame_deadline_) frame_deadline_ = now + settings_.frame_timeout;
    }
    // Copy only what completes the length prefix or the frame, so the extent is checked early.
    const std::size_t want = extent ? static_cast<std::size_t>(extent->frame_size)
                                    : length_prefix_size(head.front());
    const std::size_t take = std::min(want - std::min(want, buffer_.size()), bytes.size());
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(take));
    bytes = bytes.subspan(take);
    if (extent && buffer_.size() == extent->frame_size) {
      on_frame(buffer_, now);
      buffer_.clear();
      frame_deadline_.reset();
    }
  }
}

void StreamConnection::on_frame(std::span<const std::byte> frame, StreamTime now) {
  last_activity_ = now;
  coap::MessageView view;
  const coap::FrameError err = coap::parse_frame(settings_.framing, frame, view, settings_.max_message_size);
  if (err == coap::FrameError::too_large) {
    fail(StreamClose::message_too_large, "message too large: " + std::to_string(frame.size()) + " > " +
                                             std::to_string(settings_.max_message_size));
    return;
  }
  if (err != coap::FrameError::ok) {
    fail(StreamClose::malformed_frame, std::string("malformed frame: ") + std::string(coap::to_string(err)));
    return;
  }
  if (coap::is_empty(view.code)) return;  // §3.4: Empty messages are keep-alives and ignored
  if (coap::is_signal(view.code)) {
    on_signal(view);
    return;
  }
  if (state_ == StreamState::csm) {
    fail(StreamClose::csm_expected, "CSM expected first");
    return;
  }
  if (coap::is_request(view.code)) {
    on_request(view, now);
  } else if (coap::is_response(view.code)) {
    host_.deliver(view, now);
  }
  // Codes of classes 1 and 6 are reserved and mean nothing yet: ignored like Empty.
}

void StreamConnection::on_signal(const coap::MessageView& m) {
  if (m.code == coap::signal::csm) {
    if (const auto bad = coap::apply_csm(m, peer_)) {
      fail(StreamClose::bad_csm_option, "unsupported CSM option " + std::to_string(*bad), *bad);
      return;
    }
    if (state_ == StreamState::csm) {
      state_ = StreamState::established;
      csm_deadline_.reset();
      host_.established(peer_);
    }
    return;
  }
  if (state_ == StreamState::csm) {
    fail(StreamClose::csm_expected, "CSM expected first");
    return;
  }
  if (const auto bad = coap::unknown_critical_signal_option(m)) {
    fail(StreamClose::bad_signal_option, "unknown critical option " + std::to_string(*bad));
    return;
  }
  switch (m.code) {
    case coap::signal::ping:
      send_raw(coap::make_pong(m.token, m.find(coap::signal::custody) != nullptr));
      return;
    case coap::signal::pong:
      return;  // traffic: last_activity_ is already updated
    case coap::signal::release:
      // §5.5: the peer wants the connection gone; we close once nothing is left to answer.
      peer_released_ = true;
      state_ = StreamState::closing;
      if (in_flight_.empty()) finish(StreamClose::peer_release);
      return;
    case coap::signal::abort:
      finish(StreamClose::peer_abort);
      return;
    default:
      host_.refused(StreamRefusal::unknown_signal);
      return;
  }
}

void StreamConnection::on_request(const coap::MessageView& m, StreamTime now) {
  if (in_flight_.size() >= settings_.max_in_flight) {
    coap::Message busy;
    busy.code = coap::code::service_unavailable;
    busy.token.assign(m.token.begin(), m.token.end());
    send_raw(busy);
    host_.refused(StreamRefusal::too_many_in_flight);
    return;
  }
  in_flight_.emplace_back(m.token.begin(), m.token.end());
  host_.deliver(m, now);
}

StreamConnection::SendResult StreamConnection::send(const coap::Message& message) {
  if (!open()) {
    host_.refused(StreamRefusal::not_open);
    return SendResult::not_open;
  }
  const std::size_t size = coap::frame_size(settings_.framing, message);
  // A refused answer still ends its request: the token must not hold a slot of max_in_flight (and
  // keep the idle timeout from running) for the rest of the connection.
  if (size == 0 || coap::is_signal(message.code)) {
    host_.refused(StreamRefusal::cannot_encode);
    if (coap::is_response(message.code)) answered(message.token);
    return SendResult::cannot_encode;
  }
  if (size > peer_.max_message_size) {
    host_.refused(StreamRefusal::too_large_for_peer);
    if (coap::is_response(message.code)) answered(message.token);
    return SendResult::too_large_for_peer;
  }
  send_raw(message);
  if (coap::is_response(message.code)) answered(message.token);
  if (peer_released_ && in_flight_.empty()) finish(StreamClose::peer_release);
  return SendResult::sent;
}

StreamConnection::SendResult StreamConnection::ping(std::span<const std::byte> token) {
  if (!open()) return SendResult::not_open;
  if (token.size() > coap::max_token_length) return SendResult::cannot_encode;
  send_raw(coap::make_ping(token));
  return SendResult::sent;
}

void StreamConnection::release(std::string_view diagnostic, StreamTime now) {
  if (!open() || release_deadline_) return;
  send_raw(coap::make_release(diagnostic));
  state_ = StreamState::closing;
  release_deadline_ = now + settings_.release_timeout;
}

void StreamConnection::abort(std::string_view diagnostic) { fail(StreamClose::aborted, diagnostic); }

void StreamConnection::end(StreamClose reason) {
  if (state_ != StreamState::closed) finish(reason);
}

void StreamConnection::on_end_of_stream() {
  if (state_ != StreamState::closed) finish(StreamClose::peer_closed);
}

void StreamConnection::on_tick(StreamTime now) {
  if (state_ == StreamState::closed || state_ == StreamState::connecting) return;
  if (csm_deadline_ && now >= *csm_deadline_) {
    fail(StreamClose::csm_timeout, "CSM timeout");
  } else if (frame_deadline_ && now >= *frame_deadline_) {
    fail(StreamClose::frame_timeout, "incomplete message timeout");
  } else if (release_deadline_ && now >= *release_deadline_) {
    finish(StreamClose::released);
  } else if (in_flight_.empty() && now >= last_activity_ + settings_.idle_timeout) {
    // Orderly (§5.5), but we do not wait for the peer: an idle peer may never answer.
    send_raw(coap::make_release("idle timeout"));
    finish(StreamClose::idle_timeout);
  }
}

std::optional<StreamTime> StreamConnection::next_deadline() const {
  if (state_ == StreamState::closed || state_ == StreamState::connecting) return std::nullopt;
  auto next = earliest(earliest(csm_deadline_, frame_deadline_), release_deadline_);
  // Requests in flight are bounded by the upstream timeouts; the connection is not idle meanwhile.
  if (in_flight_.empty()) next = earliest(next, last_activity_ + settings_.idle_timeout);
  return next;
}

bool StreamConnection::send_raw(const coap::Message& message) {
  const std::vector<std::byte> frame = coap::serialize_frame(settings_.framing, message);
  if (frame.empty()) return false;
  host_.send_frame(frame);
  return true;
}

void StreamConnection::answered(std::span<const std::byte> token) {
  const auto it = std::find_if(in_flight_.begin(), in_flight_.end(), [&](const std::vector<std::byte>& t) {
    return std::equal(t.begin(), t.end(), token.begin(), token.end());
  });
  if (it != in_flight_.end()) in_flight_.erase(it);
}

void StreamConnection::fail(StreamClose reason, std::string_view diagnostic,
                            std::optional<std::uint16_t> bad_csm) {
  if (state_ == StreamState::closed) return;
  if (open()) send_raw(coap::make_abort(diagnostic, bad_csm));
  finish(reason);
}

// The buffer is not cleared here: a view delivered from it may still be in use by the caller that
// ended the connection from inside deliver().
void StreamConnection::finish(StreamClose reason) {
  state_ = StreamState::closed;
  csm_deadline_.reset();
  frame_deadline_.reset();
  release_deadline_.reset();
  host_.closed(reason);
}

}  // namespace coapgw::transport
