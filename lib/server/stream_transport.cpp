// Sessions of RFC 8323 connections; see stream_transport.hpp.
#include "server/stream_transport.hpp"

#include <prometheus/counter.h>

#include <algorithm>
#include <array>

#include "coap/message.hpp"
#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "server/dtls_tls.hpp"
#include "session/table.hpp"

namespace coapgw::server {

namespace {

constexpr std::size_t close_reasons = static_cast<std::size_t>(transport::StreamClose::upgrade_failed) + 1;
constexpr std::size_t refusal_reasons = static_cast<std::size_t>(transport::StreamRefusal::unknown_signal) + 1;

// How a connection's ending reads in coapgw_sessions_closed_total (its own reason is counted in
// coapgw_stream_closed_total).
session::CloseReason session_reason(transport::StreamClose reason, bool draining) {
  using C = transport::StreamClose;
  switch (reason) {
    case C::peer_release:
    case C::peer_abort:
    case C::peer_closed: return session::CloseReason::peer_closed;
    case C::idle_timeout: return session::CloseReason::idle_timeout;
    case C::csm_timeout:
    case C::handshake_timeout: return session::CloseReason::handshake_timeout;
    case C::tls_failed: return session::CloseReason::tls_failed;
    case C::released: return session::CloseReason::shutdown;
    case C::aborted: return draining ? session::CloseReason::shutdown : session::CloseReason::disconnected;
    default: return session::CloseReason::disconnected;  // a protocol error: the connection was aborted
  }
}

}  // namespace

StreamTransportSettings stream_settings(const config::Config& c, unsigned workers) {
  StreamTransportSettings out;
  auto& tcp = out.tcp;
  tcp.max_connections = std::max<std::size_t>(1, (c.stream.max_connections + workers - 1) / std::max(1u, workers));
  tcp.max_write_queue = c.stream.max_write_queue;
  tcp.write_timeout = c.stream.write_timeout;
  tcp.stream.max_message_size = c.coap.max_message_size;
  tcp.stream.max_in_flight = c.stream.max_in_flight;
  tcp.stream.csm_timeout = c.stream.csm_timeout;
  tcp.stream.frame_timeout = c.stream.frame_timeout;
  tcp.stream.idle_timeout = c.sessions.idle_timeout;
  return out;
}

struct StreamTransport::Listener final : transport::TcpStreamListener::Host {
  Listener(StreamTransport& t, std::uint8_t i, session::Proto p, const transport::TcpListenerSettings& settings)
      : owner(t), index(i), proto(p), listener(t.io_, settings, *this) {
    const auto name = session::to_string(p);
    using F = metrics::Metrics::StreamFamily;
    for (std::size_t r = 0; r < close_reasons; ++r)
      closed_total[r] = &t.metrics_.stream(F::closed, name, transport::to_string(static_cast<transport::StreamClose>(r)));
    for (std::size_t r = 0; r < refusal_reasons; ++r)
      refusals_total[r] =
          &t.metrics_.stream(F::refusals, name, transport::to_string(static_cast<transport::StreamRefusal>(r)));
    accepted = &t.metrics_.stream(F::connections, name, "accepted");
    over_cap = &t.metrics_.stream(F::connections, name, "refused_over_cap");
    slow_readers = &t.metrics_.stream(F::connections, name, "slow_reader");
    flush_timeouts = &t.metrics_.stream(F::connections, name, "flush_timeout");
  }

  bool admit(const Address&) override { return !owner.host_.draining(); }
  void opened(transport::StreamLink& link) override { owner.opened(*this, link); }
  bool secured(transport::StreamLink& link) override { return owner.secured(*this, link); }
  bool reads_psk_identity() const override { return owner.lookup_ != nullptr; }
  bool wait_for_key(transport::StreamLink& link, std::string_view identity) override {
    return owner.wait_for_key(*this, link, identity);
  }
  void established(transport::StreamLink& link, const coap::Csm&) override { owner.established(*this, link); }
  void deliver(transport::StreamLink& link, const coap::MessageView& m, transport::StreamTime now) override {
    owner.deliver(*this, link, m, now);
  }
  void closed(transport::StreamLink& link, transport::StreamClose reason) override { owner.closed(*this, link, reason); }
  void refused(transport::StreamLink& link, transport::StreamRefusal refusal) override {
    owner.refused(*this, link, refusal);
  }

  void flush() {
    const auto& now = listener.counters();
    accepted->Increment(static_cast<double>(now.accepted - flushed.accepted));
    over_cap->Increment(static_cast<double>(now.refused_over_cap - flushed.refused_over_cap));
    slow_readers->Increment(static_cast<double>(now.slow_readers - flushed.slow_readers));
    flush_timeouts->Increment(static_cast<double>(now.flush_timeouts - flushed.flush_timeouts));
    flushed = now;
  }

  StreamTransport& owner;
  Address address;  // as configured
  std::uint8_t index;
  session::Proto proto;
  transport::TcpStreamListener listener;
  std::unordered_map<std::uint64_t, session::Session*> sessions;  // by link id
  transport::TcpStreamListener::Counters flushed;
  std::array<prometheus::Counter*, close_reasons> closed_total{};
  std::array<prometheus::Counter*, refusal_reasons> refusals_total{};
  prometheus::Counter* accepted = nullptr;
  prometheus::Counter* over_cap = nullptr;
  prometheus::Counter* slow_readers = nullptr;
  prometheus::Counter* flush_timeouts = nullptr;
};

StreamTransport::StreamTransport(boost::asio::io_context& io, StreamTransportSettings settings, Host& host,
                                 session::Table& table, metrics::Metrics& metrics)
    : io_(io), settings_(std::move(settings)), host_(host), table_(table), metrics_(metrics) {
  settings_.tcp.reuse_port = true;
  scratch_.resize(settings_.tcp.stream.max_message_size + 16);  // a frame re-encoded: 4-byte header, no length
}

StreamTransport::~StreamTransport() = default;

bool StreamTransport::open(std::string* error) {
  auto tls_settings = settings_.tcp;
  if (!settings_.tls_listen.empty() || !settings_.wss_listen.empty()) {
    std::string why;
    if (settings_.credentials) tls_ = StreamTls::create(*settings_.credentials, &why);
    if (!tls_) {
      if (error) *error = "listen.coaps_tcp/coaps_ws: " + (why.empty() ? std::string("no TLS credentials") : why);
      return false;
    }
    tls_settings.tls = tls_->native();
    if (lookup_) tls_->set_registry(&lookup_->cache());
    tls_settings.handshake_timeout = settings_.credentials->handshake_timeout;
  }
  auto add = [&](const Address& address, session::Proto proto, const transport::TcpListenerSettings& s,
                 const char* key) {
    auto l = std::make_unique<Listener>(*this, static_cast<std::uint8_t>(listeners_.size()), proto, s);
    l->address = address;
    if (auto ec = l->listener.listen(address)) {
      if (error) *error = std::string(key) + " " + address.to_string() + ": " + ec.message();
      return false;
    }
    listeners_.push_back(std::move(l));
    return true;
  };
  for (const auto& a : settings_.tcp_listen)
    if (!add(a, session::Proto::tcp, settings_.tcp, "listen.coap_tcp")) return false;
  for (const auto& a : settings_.tls_listen)
    if (!add(a, session::Proto::tls, tls_settings, "listen.coaps_tcp")) return false;
  auto ws_settings = settings_.tcp, wss_settings = tls_settings;
  ws_settings.websocket = wss_settings.websocket = true;
  ws_settings.handshake_timeout = settings_.tcp.stream.csm_timeout;  // the upgrade: as long as a CSM may take
  for (const auto& a : settings_.ws_listen)
    if (!add(a, session::Proto::ws, ws_settings, "listen.coap_ws")) return false;
  for (const auto& a : settings_.wss_listen)
    if (!add(a, session::Proto::wss, wss_settings, "listen.coaps_ws")) return false;
  return true;
}

std::size_t StreamTransport::apply_credentials(std::shared_ptr<const dtls::PskStore> store,
                                               std::shared_ptr<const dtls::TrustStore> trust) {
  if (!tls_) return 0;
  tls_->set_credentials(std::move(store), std::move(trust));
  std::vector<session::Session*> revoked;
  table_.for_each([&](session::Session& s) {
    auto it = peers_.find(s.id());
    if (it != peers_.end() && !tls_->stands(it->second)) revoked.push_back(&s);
  });
  for (auto* s : revoked) table_.close(*s, session::CloseReason::revoked);  // forget() ends the connection
  return revoked.size();
}

bool StreamTransport::secured(Listener& l, transport::StreamLink& link) {
  session::Session* s = session_of(l, link);
  if (s == nullptr) return false;
  s->set_state(session::State::csm);
  if (link.tls() == nullptr) return true;  // coap+ws: upgraded, nobody authenticated
  auto peer = StreamTls::peer_of(link.tls());
  // The app data the DTLS sessions carry too: the authenticated identity, owned by the session.
  struct TlsDevice final : DeviceData {
    explicit TlsDevice(std::string id) : id_(std::move(id)) {}
    std::string_view identity() const override { return id_; }
    std::string id_;
  };
  auto* device = new TlsDevice(peer.identity);
  s->set_app_data(static_cast<DeviceData*>(device), [](void* p) { delete static_cast<DeviceData*>(p); });
  if (peer.registry_keyed) note_registry_session(*s, peer, *device);
  peers_[s->id()] = std::move(peer);
  host_.identified(*s);
  return true;
}

std::vector<Address> StreamTransport::bound_addresses(session::Proto proto) const {
  std::vector<Address> out;
  for (const auto& l : listeners_) {
    if (l->proto != proto) continue;
    // The configured address with the port the kernel chose (port 0 in the config).
    Address a = l->address;
    a.set_port(l->listener.port());
    out.push_back(a);
  }
  return out;
}

std::vector<DeviceLinks::StreamEndpoint> StreamTransport::plain_endpoints() const {
  std::vector<DeviceLinks::StreamEndpoint> out;
  for (const auto& l : listeners_)
    if (l->proto == session::Proto::tcp || l->proto == session::Proto::ws)
      out.push_back({l->proto, l->index, l->listener.port()});
  return out;
}

session::Session* StreamTransport::session_of(const Listener& l, const transport::StreamLink& link) const {
  auto it = l.sessions.find(link.id());
  return it == l.sessions.end() ? nullptr : it->second;
}

void StreamTransport::opened(Listener& l, transport::StreamLink& link) {
  const auto now = session::Clock::now();
  const session::Key key{link.remote(), link.local().port(), l.proto, l.index};
  // A connection's key is unique while it is open; a stale session with it (the same port reused
  // by the peer after a close we have not seen yet) gives way.
  if (auto* stale = table_.find(key)) table_.close(*stale, session::CloseReason::disconnected);
  // TLS, WebSocket: connecting until the transport is up (secured); TCP: our CSM goes out at once.
  const auto state = l.proto == session::Proto::tcp ? session::State::csm : session::State::connecting;
  session::Session* s = table_.create_server(key, link.local(), -1, now, state);
  if (s == nullptr) {
    metrics_.bad_messages(metrics::BadReason::session_table_full).Increment();
    link.abort("session table full");
    return;
  }
  l.sessions.emplace(link.id(), s);
  link_of_.emplace(s->id(), &link);
}

void StreamTransport::established(Listener& l, transport::StreamLink& link) {
  if (auto* s = session_of(l, link)) s->set_state(session::State::established);
}

void StreamTransport::deliver(Listener& l, transport::StreamLink& link, const coap::MessageView& m,
                              transport::StreamTime now) {
  session::Session* s = session_of(l, link);
  if (s == nullptr) return;
  // The same message in the RFC 7252 encoding, as the message layer takes it from UDP and DTLS.
  coap::MessageWriter w(scratch_);
  bool ok = w.header(coap::Type::non, m.code, 0, m.token);
  for (const auto& o : m.option_list()) ok = ok && w.option(o.number, o.value);
  ok = ok && w.payload(m.payload);
  if (!ok) {
    link.abort("cannot re-encode message");
    return;
  }
  table_.mark_used(*s, now);
  host_.deliver(*s, w.bytes(), now);
}

void StreamTransport::closed(Listener& l, transport::StreamLink& link, transport::StreamClose reason) {
  l.closed_total[static_cast<std::size_t>(reason)]->Increment();
  auto it = l.sessions.find(link.id());
  if (it == l.sessions.end()) return;  // the table closed the session first (forget)
  session::Session* s = it->second;
  l.sessions.erase(it);
  link_of_.erase(s->id());
  forget_registry_session(*s);
  peers_.erase(s->id());
  table_.close(*s, session_reason(reason, stopping_ || host_.draining()));
}

void StreamTransport::refused(Listener& l, transport::StreamLink&, transport::StreamRefusal refusal) {
  l.refusals_total[static_cast<std::size_t>(refusal)]->Increment();
}

void StreamTransport::send(session::Session& s, std::span<const std::byte> message) {
  auto it = link_of_.find(s.id());
  if (it == link_of_.end()) return;  // the connection is gone: like a datagram to a peer that left
  coap::MessageView view;
  if (coap::parse(message, view) != coap::ParseError::ok || coap::is_empty(view.code)) return;
  it->second->send(coap::Message::from_view(view));  // refusals are counted through refused()
}

void StreamTransport::forget(session::Session& s) {
  auto it = link_of_.find(s.id());
  if (it == link_of_.end()) return;
  transport::StreamLink* link = it->second;
  link_of_.erase(it);
  forget_registry_session(s);
  peers_.erase(s.id());
  for (auto& l : listeners_) {
    auto found = l->sessions.find(link->id());
    if (found != l->sessions.end() && found->second == &s) {
      l->sessions.erase(found);
      break;
    }
  }
  link->release("session closed");
}

void StreamTransport::begin_drain() {
  std::vector<transport::StreamLink*> open;
  for (auto& [id, link] : link_of_) open.push_back(link);
  for (auto* link : open) link->release("shutting down");
}

void StreamTransport::stop() {
  stopping_ = true;
  for (auto& l : listeners_) l->listener.stop();
}

void StreamTransport::flush_metrics() {
  for (auto& l : listeners_) l->flush();
}

std::uint64_t StreamTransport::take_handshakes_completed() {
  std::uint64_t total = 0;
  for (const auto& l : listeners_) total += l->listener.counters().tls_handshakes;
  const auto fresh = total - handshakes_taken_;
  handshakes_taken_ = total;
  return fresh;
}

std::size_t StreamTransport::connections() const {
  std::size_t n = 0;
  for (const auto& l : listeners_) n += l->listener.connections();
  return n;
}

}  // namespace coapgw::server
