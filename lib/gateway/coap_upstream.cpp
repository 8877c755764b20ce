#include "gateway/coap_upstream.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <random>
#include <stdexcept>
#include <unordered_map>

#include "coap/block.hpp"
#include "coap/message.hpp"
#include "coap/option.hpp"
#include "common/address.hpp"
#include "common/log.hpp"
#include "common/url.hpp"
#include "dtls/client_context.hpp"
#include "session/table.hpp"

namespace coapgw::gateway {
namespace {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using error_code = boost::system::error_code;

// Largest datagram accepted from the upstream; CoAP over UDP stays far below (RFC 7252 §4.6).
constexpr std::size_t max_datagram = 65535;
// CON responses recently acknowledged, so a retransmitted one (our ACK was lost) is ACKed again
// instead of being RST as unknown.
constexpr std::size_t acked_memory = 64;
// Times a Block2 fetch starts again from block 0 because the representation changed under it
// (RFC 7959 §2.4); beyond, the answer is 5.02 bad_response.
constexpr unsigned max_block2_restarts = 3;

ForwardResponse failure(std::uint8_t code, Outcome outcome) {
  ForwardResponse r;
  r.code = code;
  r.outcome = outcome;
  return r;
}

bool relayed_option(std::uint16_t n) {
  return n == coap::option::etag || n == coap::option::location_path || n == coap::option::location_query;
}

// One forwarded request, from the first CON to the final answer; spans several CONs when Block1 or
// Block2 is in play (each block is its own CON with its own message id, under the same token).
struct Exchange {
  Exchange(asio::io_context& io, ForwardDone d) : done(std::move(d)), retransmit_timer(io), deadline_timer(io) {}

  std::uint64_t token_value = 0;
  std::array<std::byte, 8> token{};
  ForwardDone done;

  std::uint8_t method = coap::code::get;
  std::vector<coap::Option> request_options;  // Uri-*, Content-Format, Accept, If-Match, If-None-Match, ETag
  std::vector<std::byte> payload;

  bool block1 = false;           // payload goes block-wise
  std::uint32_t block1_num = 0;  // block being sent
  std::uint8_t block1_szx = 6;
  bool block1_done = false;

  bool block2_asking = false;     // the CON in flight asks for block block2_next of the answer
  std::uint32_t block2_next = 0;
  std::uint8_t block2_szx = 6;
  std::optional<ForwardResponse> partial;  // options of the first Block2 block, body so far
  std::optional<std::vector<std::byte>> block2_etag;  // the first block's ETag: later ones must match
  unsigned block2_restarts = 0;  // representation changed mid-fetch: started again from block 0

  // The CON currently in flight.
  std::uint16_t mid = 0;
  bool awaiting_ack = false;
  std::vector<std::byte> datagram;
  unsigned retransmits = 0;
  std::chrono::milliseconds rto{0};
  asio::steady_timer retransmit_timer;
  asio::steady_timer deadline_timer;
};

// The client session's view of the DTLS connection (coap_session_get_tls() and the PSK accessors);
// the context and the engine pointer outlive the session (see CoapClient's member order).
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

using DtlsState = dtls::Engine::State;

class CoapClient : public std::enable_shared_from_this<CoapClient> {
 public:
  // `dtls` is null for coap://, the DTLS client context (PSK, cipher list, timing) for coaps://.
  CoapClient(asio::io_context& io, const RouteSpec& spec, const CoapClientSettings& settings, CoapTarget target,
             udp::endpoint remote, std::unique_ptr<dtls::ClientContext> dtls)
      : io_(io),
        spec_(spec),
        settings_(settings),
        target_(std::move(target)),
        remote_(remote),
        socket_(io),
        dtls_context_(std::move(dtls)),
        dtls_timer_(io),
        budget_(1),
        table_(nullptr, budget_, session::Table::Settings{}),
        rx_(max_datagram),
        rng_(std::random_device{}()) {
    socket_.open(remote_.protocol());
    socket_.connect(remote_);
    socket_.non_blocking(true);
    auto local = socket_.local_endpoint();
    const Address local_addr = Address::from_sockaddr(local.data());
    remote_addr_ = Address::from_sockaddr(remote_.data());
    const auto proto = dtls_context_ ? session::Proto::dtls : session::Proto::udp;
    session_ = table_.create_client(session::Key{remote_addr_, local_addr.port(), proto}, local_addr,
                                    session::Clock::now());
    if (!session_) throw std::runtime_error("route " + spec.prefix + ": no session for the CoAP upstream");
    if (dtls_context_) {
      session_->set_tls(std::make_unique<ClientTlsState>(*dtls_context_, dtls_));
    } else {
      session_->set_state(session::State::established);
    }
    // Message ids start at a random value (RFC 7252 §4.4) so a restarted gateway reusing the same
    // source port is not taken for a duplicate.
    for (auto n = rng_() % 65536; n > 0; --n) session_->next_message_id();
  }

  void start() { do_receive(); }

  void forward(ForwardRequest request, ForwardDone done) {
    if (closed_) return post(std::move(done), failure(coap::code::bad_gateway, Outcome::upstream_error));
    if (by_token_.size() >= settings_.max_exchanges) {
      auto r = failure(coap::code::service_unavailable, Outcome::overloaded);
      r.max_age = 5;
      return post(std::move(done), std::move(r));
    }
    auto method = coap::method_code(request.method);
    if (!method) return post(std::move(done), failure(coap::code::not_implemented, Outcome::upstream_error));
    const bool must_wait = dtls_context_ && !dtls_in(DtlsState::established);
    if (must_wait && awaiting_handshake_.size() >= settings_.max_handshake_queue) {
      auto r = failure(coap::code::service_unavailable, Outcome::overloaded);
      r.max_age = 5;
      return post(std::move(done), std::move(r));
    }

    auto ex = std::make_unique<Exchange>(io_, std::move(done));
    do {
      ex->token_value = rng_();
    } while (by_token_.contains(ex->token_value));
    for (std::size_t i = 0; i < 8; ++i) ex->token[i] = static_cast<std::byte>(ex->token_value >> (8 * i));
    ex->method = *method;
    for (auto& seg : target_.base_path) add_string(*ex, coap::option::uri_path, seg);
    for (auto& seg : split_path(request.path)) add_string(*ex, coap::option::uri_path, seg);
    for (auto& q : split_query(request.query)) add_string(*ex, coap::option::uri_query, q);
    if (request.content_format) add_uint(*ex, coap::option::content_format, *request.content_format);
    if (request.accept) add_uint(*ex, coap::option::accept, *request.accept);
    for (auto& v : request.if_match) add_bytes(*ex, coap::option::if_match, v);
    if (request.if_none_match) add_bytes(*ex, coap::option::if_none_match, {});
    for (auto& v : request.etags) add_bytes(*ex, coap::option::etag, v);
    ex->payload = std::move(request.payload);
    ex->block1 = ex->payload.size() > settings_.block_size;
    ex->block1_szx = coap::szx_for_size(settings_.block_size);
    ex->block2_szx = ex->block1_szx;

    auto token = ex->token_value;
    session_->reference();  // pending traffic holds the session
    ex->deadline_timer.expires_after(spec_.timeout);
    ex->deadline_timer.async_wait([self = shared_from_this(), token](error_code ec) {
      if (ec) return;
      self->finish(token, failure(coap::code::gateway_timeout, Outcome::timeout));
    });
    auto& ref = *ex;
    by_token_.emplace(token, std::move(ex));
    if (must_wait) {
      awaiting_handshake_.push_back(token);
      if (!dtls_in(DtlsState::handshake)) start_handshake();
      return;
    }
    send_next(ref);
  }

  // Answers everything in flight and closes the socket; the session is released.
  void shutdown() {
    if (closed_) return;
    closed_ = true;
    if (dtls_context_) {
      ++dtls_generation_;
      dtls_timer_.cancel();
      if (dtls_) {
        dtls::Output out;
        dtls_->close(out);  // close_notify, so the upstream frees its side now
        flush_dtls(out);
      }
    }
    std::vector<std::uint64_t> tokens;
    for (auto& [t, ex] : by_token_) tokens.push_back(t);
    for (auto t : tokens) finish(t, failure(coap::code::bad_gateway, Outcome::upstream_error));
    error_code ec;
    socket_.close(ec);
    if (session_) {
      session_->release();  // refcount 1 from create_client: frees it
      session_ = nullptr;
    }
  }

 private:
  void post(ForwardDone done, ForwardResponse r) {
    asio::post(io_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  }

  static void add_string(Exchange& ex, std::uint16_t n, std::string_view v) {
    coap::Option o{n, {}};
    auto b = coap::as_bytes(v);
    o.value.assign(b.begin(), b.end());
    ex.request_options.push_back(std::move(o));
  }
  static void add_bytes(Exchange& ex, std::uint16_t n, std::span<const std::byte> v) {
    ex.request_options.push_back(coap::Option{n, std::vector<std::byte>(v.begin(), v.end())});
  }
  static void add_uint(Exchange& ex, std::uint16_t n, std::uint32_t v) {
    std::array<std::byte, 4> buf{};
    auto len = coap::encode_uint(v, buf);
    ex.request_options.push_back(coap::Option{n, std::vector<std::byte>(buf.begin(), buf.begin() + len)});
  }

  // Builds and sends the next CON of the exchange: the next Block1 block, the next Block2 request,
  // or the whole request.
  void send_next(Exchange& ex) {
    coap::Message m;
    m.type = coap::Type::con;
    m.code = ex.method;
    m.message_id = session_->next_message_id();
    m.token.assign(ex.token.begin(), ex.token.end());
    m.options = ex.request_options;
    if (ex.block2_asking) {
      // RFC 7959 §2.4: later blocks of the answer are asked for with Block2 and no payload (a FETCH
      // repeats its body, which selects what is answered: RFC 8132 §2.3.2).
      add_block(m, coap::option::block2, coap::BlockValue{ex.block2_next, false, ex.block2_szx});
      if (ex.method == coap::code::fetch) m.payload = ex.payload;
    } else if (ex.block1) {
      const std::size_t size = std::size_t{16} << ex.block1_szx;
      const std::size_t offset = std::size_t{ex.block1_num} * size;
      const std::size_t n = std::min(size, ex.payload.size() - offset);
      const bool more = offset + n < ex.payload.size();
      add_block(m, coap::option::block1, coap::BlockValue{ex.block1_num, more, ex.block1_szx});
      if (ex.block1_num == 0) m.add_uint_option(coap::option::size1, static_cast<std::uint32_t>(ex.payload.size()));
      m.payload.assign(ex.payload.begin() + static_cast<std::ptrdiff_t>(offset),
                       ex.payload.begin() + static_cast<std::ptrdiff_t>(offset + n));
    } else {
      m.payload = ex.payload;
    }
    ex.datagram = coap::serialize(m);
    if (ex.datagram.empty()) {
      return finish(ex.token_value, failure(coap::code::bad_gateway, Outcome::upstream_error));
    }
    if (ex.awaiting_ack) by_mid_.erase(ex.mid);
    ex.mid = m.message_id;
    ex.awaiting_ack = true;
    by_mid_[ex.mid] = ex.token_value;
    ex.retransmits = 0;
    std::uniform_real_distribution<double> factor(1.0, std::max(1.0, settings_.ack_random_factor));
    ex.rto = std::chrono::milliseconds(
        static_cast<std::int64_t>(static_cast<double>(settings_.ack_timeout.count()) * factor(rng_)));
    transmit(ex);
  }

  static void add_block(coap::Message& m, std::uint16_t number, const coap::BlockValue& b) {
    std::array<std::byte, 3> buf{};
    auto len = coap::encode_block(b, buf);
    m.add_option(number, std::span<const std::byte>(buf.data(), len));
  }

  void transmit(Exchange& ex) {
    error_code ec = send_message(ex.datagram);
    if (ec == asio::error::connection_refused) {
      return finish(ex.token_value, failure(coap::code::bad_gateway, Outcome::connect_failed));
    }
    // Other send errors (would_block, no buffer space) are left to the retransmission.
    ex.retransmit_timer.expires_after(ex.rto);
    ex.retransmit_timer.async_wait(
        [self = shared_from_this(), token = ex.token_value, mid = ex.mid](error_code e) {
          if (!e) self->on_retransmit_due(token, mid);
        });
  }

  void on_retransmit_due(std::uint64_t token, std::uint16_t mid) {
    auto it = by_token_.find(token);
    if (it == by_token_.end()) return;
    Exchange& ex = *it->second;
    if (!ex.awaiting_ack || ex.mid != mid) return;  // a stale timer for an earlier CON
    if (ex.retransmits >= settings_.max_retransmit) {
      return finish(token, failure(coap::code::gateway_timeout, Outcome::timeout));
    }
    ++ex.retransmits;
    ex.rto *= 2;
    transmit(ex);
  }

  void do_receive() {
    socket_.async_receive(asio::buffer(rx_), [self = shared_from_this()](error_code ec, std::size_t n) {
      if (self->closed_ || ec == asio::error::operation_aborted) return;
      if (ec == asio::error::connection_refused) {
        self->on_unreachable();
      } else if (!ec) {
        std::span<const std::byte> datagram(self->rx_.data(), n);
        if (self->dtls_context_) {
          self->on_dtls_datagram(datagram);
        } else {
          self->on_datagram(datagram);
        }
      }
      if (!self->closed_) self->do_receive();
    });
  }

  // ICMP port unreachable for one of our datagrams: the upstream is down, so every exchange that has
  // not heard from it yet fails now rather than at the timeout.
  void on_unreachable() {
    if (dtls_in(DtlsState::handshake)) {
      dtls_.reset();
      return on_handshake_failed("upstream unreachable (ICMP)");
    }
    if (dtls_in(DtlsState::established)) {
      dtls_.reset();  // its state died with the upstream, if it restarts it will not know us
      return on_connection_lost("upstream unreachable (ICMP)", Outcome::connect_failed);
    }
    std::vector<std::uint64_t> tokens;
    for (auto& [t, ex] : by_token_) {
      if (ex->awaiting_ack) tokens.push_back(t);
    }
    for (auto t : tokens) finish(t, failure(coap::code::bad_gateway, Outcome::connect_failed));
  }

  void send_empty(coap::Type type, std::uint16_t mid) {
    std::array<std::byte, 4> buf{};
    coap::MessageWriter w(buf);
    w.header(type, coap::code::empty, mid, {});
    send_message(std::span<const std::byte>(w.bytes().data(), w.size()));
  }

  // One CoAP message to the upstream: a datagram for coap://, a record for coaps://. Never changes
  // the exchange tables synchronously (callers hold Exchange references); a connection the write
  // broke is handled from a posted step.
  error_code send_message(std::span<const std::byte> message) {
    error_code ec;
    if (!dtls_context_) {
      socket_.send(asio::buffer(message.data(), message.size()), 0, ec);
      return ec;
    }
    dtls::Output out;
    if (!dtls_in(DtlsState::established)) return ec;  // the exchange's retransmission tries again
    if (!dtls_->send(message, out) && dtls_->state() == DtlsState::closed) {
      // The write sequence space is used up: the engine closed the connection (close_notify in `out`).
      asio::post(io_, [self = shared_from_this(), gen = dtls_generation_] {
        dtls::Output none;
        if (gen == self->dtls_generation_ && !self->closed_) self->after_dtls_step(DtlsState::established, none);
      });
    }
    ec = flush_dtls(out);
    if (ec == asio::error::connection_refused) {
      // The ICMP error was reported to this send, so the receive side will not see it: drop the
      // connection from here (posted, as above).
      asio::post(io_, [self = shared_from_this(), gen = dtls_generation_] {
        if (gen == self->dtls_generation_ && !self->closed_) self->on_unreachable();
      });
    }
    return ec;
  }

  error_code flush_dtls(dtls::Output& out) {
    error_code last;
    for (auto& d : out.datagrams) {
      error_code ec;
      socket_.send(asio::buffer(d), 0, ec);
      if (ec) last = ec;
    }
    return last;
  }

  bool dtls_in(DtlsState state) const { return dtls_ && dtls_->state() == state; }

  // Why the connection's engine stopped, for logs.
  std::string dtls_error() const {
    if (!dtls_) return "no connection";
    switch (dtls_->failure()) {
      case dtls::Failure::none: return "close_notify from the peer";
      case dtls::Failure::handshake_timeout:
        return "no handshake within " + std::to_string(dtls_context_->handshake_timeout().count()) +
               " ms or retransmissions exhausted";
      default: return std::string(dtls::to_string(dtls_->failure()));
    }
  }

  // A fresh connection (a new client-role engine; any previous one is dropped without a word).
  void start_handshake() {
    ++dtls_generation_;
    dtls_timer_.cancel();
    session_->set_state(session::State::handshake);
    dtls::Output out;
    dtls_ = dtls_context_->connect(remote_addr_, out, std::chrono::steady_clock::now());
    if (!dtls_) return on_handshake_failed("DTLS handshake start");
    after_dtls_step(DtlsState::handshake, out);
  }

  // DTLS flight retransmission (RFC 6347 §4.2.4) and the handshake deadline: the engine says
  // when, this timer calls it back.
  void arm_dtls_timer() {
    auto due = dtls_ ? dtls_->next_timer() : std::nullopt;
    if (!due) return;
    dtls_timer_.expires_at(*due);
    dtls_timer_.async_wait([self = shared_from_this(), gen = dtls_generation_](error_code ec) {
      if (ec || gen != self->dtls_generation_ || self->closed_ || !self->dtls_) return;
      const auto before = self->dtls_->state();
      dtls::Output out;
      self->dtls_->on_timer(out, std::chrono::steady_clock::now());
      self->after_dtls_step(before, out);
    });
  }

  // Sends what the engine produced and acts on its state change.
  void after_dtls_step(DtlsState before, dtls::Output& out) {
    flush_dtls(out);
    const auto now = dtls_ ? dtls_->state() : DtlsState::closed;
    if (before == DtlsState::handshake) {
      if (now == DtlsState::established) return on_connected();
      if (now != DtlsState::handshake) return on_handshake_failed(dtls_error());
      return arm_dtls_timer();
    }
    if (before == DtlsState::established && now != DtlsState::established) {
      on_connection_lost(dtls_error(), Outcome::upstream_error);
    }
  }

  void on_connected() {
    ++dtls_generation_;  // the handshake timer is done with
    dtls_timer_.cancel();
    session_->set_state(session::State::established);
    auto tokens = std::move(awaiting_handshake_);
    awaiting_handshake_.clear();
    for (auto t : tokens) {
      if (closed_ || !dtls_in(DtlsState::established)) break;
      if (auto it = by_token_.find(t); it != by_token_.end()) send_next(*it->second);
    }
  }

  void on_handshake_failed(const std::string& why) {
    ++dtls_generation_;
    dtls_timer_.cancel();
    session_->set_state(session::State::none);
    warn("DTLS handshake with " + spec_.upstream + " failed: " + why);
    auto tokens = std::move(awaiting_handshake_);
    awaiting_handshake_.clear();
    for (auto t : tokens) finish(t, failure(coap::code::bad_gateway, Outcome::connect_failed));
  }

  // The established connection is gone (close_notify, fatal alert, unreachable): nothing in flight
  // can be answered over it; the next request handshakes again.
  void on_connection_lost(const std::string& why, Outcome outcome) {
    ++dtls_generation_;
    dtls_timer_.cancel();
    session_->set_state(session::State::none);
    warn("DTLS connection to " + spec_.upstream + " closed: " + why);
    std::vector<std::uint64_t> tokens;
    for (auto& [t, ex] : by_token_) tokens.push_back(t);
    for (auto t : tokens) finish(t, failure(coap::code::bad_gateway, outcome));
  }

  void warn(const std::string& line) {
    if (auto suppressed = warn_limit_.allow(std::chrono::steady_clock::now())) {
      log::warn(*suppressed ? line + " (" + std::to_string(*suppressed) + " more suppressed)" : line);
    }
  }

  void on_dtls_datagram(std::span<const std::byte> datagram) {
    if (!dtls_) return;  // nothing asked for a connection: stray datagram
    const auto before = dtls_->state();
    dtls::Output out;
    dtls_->on_datagram(datagram, out, std::chrono::steady_clock::now());
    // Records decrypted over the established connection are handled before a close in the same
    // datagram fails what is left in flight.
    if (before == DtlsState::established) {
      for (auto& m : out.plaintexts) {
        if (closed_) return;
        on_datagram(m);
      }
    }
    if (!closed_) after_dtls_step(before, out);
  }

  void on_datagram(std::span<const std::byte> datagram) {
    coap::MessageView m;
    if (coap::parse(datagram, m) != coap::ParseError::ok) return;  // RFC 7252 §4.2: silently ignore
    if (m.type == coap::Type::ack || m.type == coap::Type::rst) {
      auto it = by_mid_.find(m.message_id);
      if (it == by_mid_.end()) return;
      auto token = it->second;
      auto& ex = *by_token_.at(token);
      if (m.type == coap::Type::rst) return finish(token, failure(coap::code::bad_gateway, Outcome::upstream_error));
      if (coap::is_empty(m.code)) {  // separate response follows
        stop_awaiting(ex);
        return;
      }
      if (!token_matches(ex, m)) return;
      stop_awaiting(ex);
      return on_response(ex, m);
    }
    // CON or NON: a separate response (or a request, which a client does not serve).
    if (!coap::is_response(m.code) || m.token.size() != 8) {
      if (m.type == coap::Type::con) send_empty(coap::Type::rst, m.message_id);
      return;
    }
    std::uint64_t token = 0;
    for (std::size_t i = 0; i < 8; ++i) token |= std::uint64_t(std::to_integer<std::uint8_t>(m.token[i])) << (8 * i);
    if (m.type == coap::Type::con && std::find(acked_.begin(), acked_.end(), m.message_id) != acked_.end()) {
      // A retransmission of a response already handled (our ACK was lost): ACK again, act once.
      send_empty(coap::Type::ack, m.message_id);
      return;
    }
    auto it = by_token_.find(token);
    if (it == by_token_.end()) {
      if (m.type == coap::Type::con) send_empty(coap::Type::rst, m.message_id);
      return;
    }
    if (m.type == coap::Type::con) {
      send_empty(coap::Type::ack, m.message_id);
      acked_.push_back(m.message_id);
      if (acked_.size() > acked_memory) acked_.pop_front();
    }
    if (is_stale(*it->second, m)) return;
    // A separate response also acknowledges our CON if its empty ACK was lost (RFC 7252 §5.2.2).
    stop_awaiting(*it->second);
    on_response(*it->second, m);
  }

  static bool token_matches(const Exchange& ex, const coap::MessageView& m) {
    return m.token.size() == ex.token.size() && std::equal(m.token.begin(), m.token.end(), ex.token.begin());
  }

  // A late separate response to an earlier block of this exchange (same token, already handled).
  static bool is_stale(const Exchange& ex, const coap::MessageView& m) {
    if (ex.partial) {
      if (auto* o = m.find(coap::option::block2)) {
        auto b = coap::decode_block(o->value);
        if (b && std::size_t{b->num} * b->size() < ex.partial->payload.size()) return true;
      }
    }
    if (ex.block1 && !ex.block1_done && m.code == coap::code::continue_) {
      if (auto* o = m.find(coap::option::block1)) {
        // Stale when what it acknowledges ends before the block now in flight starts.
        auto b = coap::decode_block(o->value);
        const std::size_t in_flight_start = (std::size_t{16} << ex.block1_szx) * ex.block1_num;
        if (b && b->size() * (std::size_t{b->num} + 1) <= in_flight_start) return true;
      }
    }
    return false;
  }

  void stop_awaiting(Exchange& ex) {
    if (!ex.awaiting_ack) return;
    ex.awaiting_ack = false;
    by_mid_.erase(ex.mid);
    ex.retransmit_timer.cancel();
  }

  void on_response(Exchange& ex, const coap::MessageView& m) {
    const auto token = ex.token_value;
    // Block1 in progress: 2.31 Continue asks for the next block.
    if (ex.block1 && !ex.block1_done) {
      const std::size_t size = std::size_t{16} << ex.block1_szx;
      const std::size_t sent = (std::size_t{ex.block1_num} + 1) * size;
      if (m.code == coap::code::continue_ && sent < ex.payload.size()) {
        std::uint8_t szx = ex.block1_szx;
        if (auto* b1 = m.find(coap::option::block1)) {
          if (auto v = coap::decode_block(b1->value); v && v->szx < szx) szx = v->szx;  // server asks smaller
        }
        ex.block1_szx = szx;
        ex.block1_num = static_cast<std::uint32_t>(sent / (std::size_t{16} << szx));
        return send_next(ex);
      }
      ex.block1_done = true;
    }
    // Block2: collect every block of the answer before answering the device.
    std::optional<coap::BlockValue> b2;
    if (auto* o = m.find(coap::option::block2)) {
      b2 = coap::decode_block(o->value);
      if (!b2) return finish(token, failure(coap::code::bad_gateway, Outcome::bad_response));
    }
    if (b2 && (b2->more || ex.partial)) return on_block2(ex, m, *b2);
    finish(token, to_response(m));
  }

  // One block of a Block2 answer (RFC 7959 §2.4). Blocks are placed by byte offset, so an upstream
  // that answers in a smaller block size than asked (or changes to one) is followed; an ETag that
  // differs from the first block's means the representation changed meanwhile, and the fetch starts
  // again from block 0 (a bounded number of times).
  void on_block2(Exchange& ex, const coap::MessageView& m, const coap::BlockValue& b2) {
    const auto token = ex.token_value;
    const std::size_t offset = std::size_t{b2.num} * b2.size();
    std::optional<std::vector<std::byte>> etag;
    if (auto* e = m.find(coap::option::etag)) etag.emplace(e->value.begin(), e->value.end());
    // A block without an ETag says nothing about the version (RFC 7959 §2.4: SHOULD, not MUST).
    const bool changed = etag && etag != ex.block2_etag;
    if (ex.partial && (m.code != ex.partial->code || changed)) {
      if (ex.block2_restarts >= max_block2_restarts) {
        return finish(token, failure(coap::code::bad_gateway, Outcome::bad_response));
      }
      ++ex.block2_restarts;
      ex.partial.reset();
      ex.block2_next = 0;
      if (b2.num != 0) return send_block2_request(ex, 0, ex.block2_szx);
    }
    const std::size_t have = ex.partial ? ex.partial->payload.size() : 0;
    // RFC 7959 §2.2: every block but the last carries exactly its size.
    if (offset != have || (b2.more && m.payload.size() != b2.size())) {
      return finish(token, failure(coap::code::bad_gateway, Outcome::bad_response));
    }
    if (auto* size2 = m.find(coap::option::size2); size2 && coap::decode_uint(size2->value) > settings_.max_body_bytes) {
      return finish(token, failure(coap::code::bad_gateway, Outcome::bad_response));
    }
    if (have + m.payload.size() > settings_.max_body_bytes) {
      return finish(token, failure(coap::code::bad_gateway, Outcome::bad_response));
    }
    if (!ex.partial) {
      ex.partial = to_response(m);
      ex.block2_etag = std::move(etag);
    } else {
      ex.partial->payload.insert(ex.partial->payload.end(), m.payload.begin(), m.payload.end());
    }
    if (!b2.more) {
      auto whole = std::move(*ex.partial);
      return finish(token, std::move(whole));
    }
    const std::uint8_t szx = std::min(ex.block2_szx, b2.szx);  // a smaller size, once offered, is kept
    send_block2_request(ex, static_cast<std::uint32_t>(ex.partial->payload.size() / (std::size_t{16} << szx)), szx);
  }

  void send_block2_request(Exchange& ex, std::uint32_t num, std::uint8_t szx) {
    if (num > coap::max_block_num) return finish(ex.token_value, failure(coap::code::bad_gateway, Outcome::bad_response));
    ex.block2_szx = szx;
    ex.block2_next = num;
    ex.block2_asking = true;
    send_next(ex);
  }

  static ForwardResponse to_response(const coap::MessageView& m) {
    ForwardResponse r;
    r.code = m.code;
    r.outcome = coap::code_class(m.code) == 5 ? Outcome::upstream_error : Outcome::ok;
    if (auto* cf = m.find(coap::option::content_format))
      r.content_format = static_cast<std::uint16_t>(coap::decode_uint(cf->value));
    if (auto* ma = m.find(coap::option::max_age)) r.max_age = coap::decode_uint(ma->value);
    for (auto& o : m.option_list()) {
      if (relayed_option(o.number)) r.options.emplace_back(o.number, std::vector<std::byte>(o.value.begin(), o.value.end()));
    }
    r.payload.assign(m.payload.begin(), m.payload.end());
    return r;
  }

  void finish(std::uint64_t token, ForwardResponse response) {
    auto it = by_token_.find(token);
    if (it == by_token_.end()) return;
    auto ex = std::move(it->second);
    by_token_.erase(it);
    auto queued = std::find(awaiting_handshake_.begin(), awaiting_handshake_.end(), token);
    if (queued != awaiting_handshake_.end()) awaiting_handshake_.erase(queued);
    if (ex->awaiting_ack) by_mid_.erase(ex->mid);
    ex->retransmit_timer.cancel();
    ex->deadline_timer.cancel();
    if (session_) session_->release();
    post(std::move(ex->done), std::move(response));
  }

  asio::io_context& io_;
  RouteSpec spec_;
  CoapClientSettings settings_;
  CoapTarget target_;
  udp::endpoint remote_;
  udp::socket socket_;
  Address remote_addr_;
  // Both before table_: the session's TlsState points at them.
  std::unique_ptr<dtls::ClientContext> dtls_context_;  // null for coap://
  std::unique_ptr<dtls::Engine> dtls_;                 // the current connection, null before the first
  asio::steady_timer dtls_timer_;  // DTLS flight retransmission and handshake deadline (the engine's next_timer)
  std::uint64_t dtls_generation_ = 0;    // timers armed for an earlier handshake/connection ignore themselves
  std::deque<std::uint64_t> awaiting_handshake_;  // tokens queued until the handshake is done
  log::RateLimited warn_limit_;
  session::Budget budget_;  // before table_: the table returns its sessions to it
  session::Table table_;
  session::Session* session_ = nullptr;
  std::unordered_map<std::uint64_t, std::unique_ptr<Exchange>> by_token_;
  std::unordered_map<std::uint16_t, std::uint64_t> by_mid_;  // CONs awaiting their ACK
  std::deque<std::uint16_t> acked_;
  std::vector<std::byte> rx_;
  std::mt19937_64 rng_;
  bool closed_ = false;
};

// The Upstream face: owns the client, whose handlers keep it alive until they have run.
class CoapUpstream final : public Upstream {
 public:
  explicit CoapUpstream(std::shared_ptr<CoapClient> client) : client_(std::move(client)) { client_->start(); }
  ~CoapUpstream() override { client_->shutdown(); }
  void forward(ForwardRequest request, ForwardDone done) override {
    client_->forward(std::move(request), std::move(done));
  }
  void shutdown() override { client_->shutdown(); }

 private:
  std::shared_ptr<CoapClient> client_;
};

}  // namespace

std::vector<std::string> split_path(std::string_view path) { return url::split_path(path); }

std::vector<std::string> split_query(std::string_view query) { return url::split_query(query); }

std::optional<CoapTarget> parse_coap_target(std::string_view url) {
  auto parsed = url::parse_server_url(url);
  if (!parsed || (parsed->scheme != "coap" && parsed->scheme != "coaps")) return std::nullopt;
  CoapTarget t;
  t.secure = parsed->scheme == "coaps";
  t.host = std::move(parsed->host);
  t.port = parsed->port.value_or(t.secure ? 5684 : 5683);
  t.base_path = split_path(parsed->path);
  return t;
}

std::unique_ptr<Upstream> make_coap_upstream(asio::io_context& io, const RouteSpec& spec,
                                             const CoapClientSettings& settings) {
  auto target = parse_coap_target(spec.upstream);
  if (!target) throw std::runtime_error("route " + spec.prefix + ": malformed CoAP upstream \"" + spec.upstream + "\"");
  std::unique_ptr<dtls::ClientContext> dtls;
  if (target->secure) {
    if (spec.psk_key.empty()) {
      throw std::runtime_error("route " + spec.prefix + ": coaps upstream needs psk { identity, key }");
    }
    dtls::ClientSettings client;
    client.psk_identity = spec.psk_identity;
    client.psk_key = spec.psk_key;
    client.mtu = 1280;
    // A handshake may take at most half the route's timeout, so a failed one still leaves time to answer.
    client.handshake_timeout =
        std::max(std::chrono::milliseconds(1), std::min(settings.handshake_timeout, spec.timeout / 2));
    std::string error;
    dtls = dtls::ClientContext::create(std::move(client), &error);
    if (!dtls) throw std::runtime_error("route " + spec.prefix + ": coaps upstream: " + error);
  }
  if (settings.block_size < 16 || settings.max_retransmit > 20 || settings.ack_timeout.count() <= 0) {
    throw std::runtime_error("route " + spec.prefix + ": bad CoAP transmission parameters");
  }
  udp::resolver resolver(io);
  error_code ec;
  auto results = resolver.resolve(target->host, std::to_string(target->port), ec);
  if (ec || results.empty()) {
    throw std::runtime_error("route " + spec.prefix + ": cannot resolve \"" + target->host + "\": " + ec.message());
  }
  udp::endpoint remote = results.begin()->endpoint();
  auto client = std::make_shared<CoapClient>(io, spec, settings, std::move(*target), remote, std::move(dtls));
  return std::make_unique<CoapUpstream>(std::move(client));
}

}  // namespace coapgw::gateway
