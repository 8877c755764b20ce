#include "upstream/coap_connection.hpp"

#include <boost/asio/post.hpp>

#include <chrono>

#include "coap/message.hpp"
#include "session/session.hpp"

namespace coapgw::upstream {
namespace {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

// Largest datagram accepted from the upstream; CoAP over UDP stays far below (RFC 7252 §4.6).
constexpr std::size_t max_datagram = 65535;

// The client session's view of the DTLS connection (coap_session_get_tls() and the PSK accessors).
class ClientTlsState final : public session::TlsState {
 public:
  ClientTlsState(const dtls::ClientContext& context, const std::unique_ptr<dtls::Engine>& engine)
      : context_(context), engine_(engine) {}
  // The SSL object while the connection has one (it is freed once records move to the lean layer).
  void* native_handle() const override { return engine_ ? engine_->native_handle() : nullptr; }
  session::TlsLibrary library() const override { return session::TlsLibrary::openssl; }
  std::span<const std::byte> psk_key() const override { return coap::as_bytes(context_.settings().psk_key); }
  std::string_view psk_hint() const override { return engine_ ? engine_->psk_hint() : std::string_view(); }
  std::string_view identity() const override { return context_.settings().psk_identity; }

 private:
  const dtls::ClientContext& context_;
  const std::unique_ptr<dtls::Engine>& engine_;
};

}  // namespace

CoapConnection::CoapConnection(asio::io_context& io, asio::ip::udp::endpoint remote,
                               std::unique_ptr<dtls::ClientContext> dtls)
    : io_(io), socket_(io), dtls_context_(std::move(dtls)), timer_(io), rx_(max_datagram) {
  socket_.open(remote.protocol());
  socket_.connect(remote);
  socket_.non_blocking(true);
  auto local = socket_.local_endpoint();
  local_ = Address::from_sockaddr(local.data());
  remote_addr_ = Address::from_sockaddr(remote.data());
}

std::unique_ptr<session::TlsState> CoapConnection::tls_state() const {
  if (!dtls_context_) return nullptr;
  return std::make_unique<ClientTlsState>(*dtls_context_, dtls_);
}

void CoapConnection::start(Events& events) {
  events_ = &events;
  do_receive();
}

void CoapConnection::close() {
  if (closed_) return;
  closed_ = true;
  ++generation_;
  timer_.cancel();
  if (dtls_) {
    dtls::Output out;
    dtls_->close(out);  // close_notify, so the upstream frees its side now
    flush(out);
  }
  error_code ec;
  socket_.close(ec);
}

void CoapConnection::do_receive() {
  socket_.async_receive(asio::buffer(rx_), [self = shared_from_this()](error_code ec, std::size_t n) {
    if (self->closed_ || ec == asio::error::operation_aborted) return;
    if (ec == asio::error::connection_refused) {
      self->on_icmp_unreachable();
    } else if (!ec) {
      std::span<const std::byte> datagram(self->rx_.data(), n);
      if (self->dtls_context_) {
        self->on_dtls_datagram(datagram);
      } else {
        self->events_->on_message(datagram);
      }
    }
    if (!self->closed_) self->do_receive();
  });
}

// ICMP port unreachable for one of our datagrams: the upstream is down.
void CoapConnection::on_icmp_unreachable() {
  if (handshaking()) {
    dtls_.reset();
    ++generation_;
    timer_.cancel();
    return events_->on_handshake_failed("upstream unreachable (ICMP)");
  }
  if (established()) {
    dtls_.reset();  // its state died with the upstream, if it restarts it will not know us
    return lost("upstream unreachable (ICMP)", true);
  }
  events_->on_unreachable();
}

exchange::SendResult CoapConnection::send(std::span<const std::byte> message) {
  error_code ec;
  if (!dtls_context_) {
    socket_.send(asio::buffer(message.data(), message.size()), 0, ec);
    // Other send errors (would_block, no buffer space) are left to the retransmission.
    return ec == asio::error::connection_refused ? exchange::SendResult::refused : exchange::SendResult::sent;
  }
  if (!established()) return exchange::SendResult::sent;  // the exchange's retransmission tries again
  dtls::Output out;
  if (!dtls_->send(message, out) && dtls_->state() == State::closed) {
    // The write sequence space is used up: the engine closed the connection (close_notify in `out`).
    asio::post(io_, [self = shared_from_this(), gen = generation_] {
      dtls::Output none;
      if (gen == self->generation_ && !self->closed_) self->after_step(State::established, none);
    });
  }
  ec = flush(out);
  if (ec != asio::error::connection_refused) return exchange::SendResult::sent;
  // The ICMP error was reported to this send, so the receive side will not see it: the connection
  // is dropped from a posted step.
  asio::post(io_, [self = shared_from_this(), gen = generation_] {
    if (gen == self->generation_ && !self->closed_) self->on_icmp_unreachable();
  });
  return exchange::SendResult::refused;
}

error_code CoapConnection::flush(dtls::Output& out) {
  error_code last;
  for (auto& d : out.datagrams) {
    error_code ec;
    socket_.send(asio::buffer(d), 0, ec);
    if (ec) last = ec;
  }
  return last;
}

std::string CoapConnection::failure_text() const {
  if (!dtls_) return "no connection";
  switch (dtls_->failure()) {
    case dtls::Failure::none: return "close_notify from the peer";
    case dtls::Failure::handshake_timeout:
      return "no handshake within " + std::to_string(dtls_context_->handshake_timeout().count()) +
             " ms or retransmissions exhausted";
    default: return std::string(dtls::to_string(dtls_->failure()));
  }
}

void CoapConnection::connect() {
  ++generation_;
  timer_.cancel();
  dtls::Output out;
  dtls_ = dtls_context_->connect(remote_addr_, out, std::chrono::steady_clock::now());
  if (!dtls_) return events_->on_handshake_failed("DTLS handshake start");
  after_step(State::handshake, out);
}

// DTLS flight retransmission (RFC 6347 §4.2.4) and the handshake deadline: the engine says when,
// this timer calls it back.
void CoapConnection::arm_timer() {
  auto due = dtls_ ? dtls_->next_timer() : std::nullopt;
  if (!due) return;
  timer_.expires_at(*due);
  timer_.async_wait([self = shared_from_this(), gen = generation_](error_code ec) {
    if (ec || gen != self->generation_ || self->closed_ || !self->dtls_) return;
    const auto before = self->dtls_->state();
    dtls::Output out;
    self->dtls_->on_timer(out, std::chrono::steady_clock::now());
    self->after_step(before, out);
  });
}

void CoapConnection::on_dtls_datagram(std::span<const std::byte> datagram) {
  if (!dtls_) return;  // nothing asked for a connection: stray datagram
  const auto before = dtls_->state();
  dtls::Output out;
  dtls_->on_datagram(datagram, out, std::chrono::steady_clock::now());
  // Records decrypted over the established connection are handled before a close in the same
  // datagram fails what is left in flight.
  if (before == State::established) {
    for (auto& m : out.plaintexts) {
      if (closed_) return;
      events_->on_message(m);
    }
  }
  if (!closed_) after_step(before, out);
}

// Sends what the engine produced and acts on its state change.
void CoapConnection::after_step(State before, dtls::Output& out) {
  flush(out);
  const auto now = dtls_ ? dtls_->state() : State::closed;
  if (before == State::handshake) {
    if (now == State::established) {
      ++generation_;  // the handshake timer is done with
      timer_.cancel();
      return events_->on_connected();
    }
    if (now != State::handshake) {
      ++generation_;
      timer_.cancel();
      return events_->on_handshake_failed(failure_text());
    }
    return arm_timer();
  }
  if (before == State::established && now != State::established) lost(failure_text(), false);
}

void CoapConnection::lost(const std::string& why, bool unreachable) {
  ++generation_;
  timer_.cancel();
  events_->on_connection_lost(why, unreachable);
}

}  // namespace coapgw::upstream
