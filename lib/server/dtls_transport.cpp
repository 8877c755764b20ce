// The DTLS datagram transport of one worker (see dtls_transport.hpp): stateless cookie exchange for
// unknown peers (through dtls::ServerContext), the handshake bounds, per-session engines driven by
// datagrams and ticks, replacement handshakes, restored sessions, and revocation: a DTLS session
// lives only while the credentials it was made with still stand. They are checked when a reload
// hands the worker a new PSK store or client CA (every session in the table: in use, idle in the
// pool, restored), when a persisted session is claimed by its device, and when a handshake that
// began before a reload completes. A revoked session is closed with reason `revoked` (close_notify
// sent when it was established); a revoked handshake is dropped and counted as a failed handshake.
#include "server/dtls_transport.hpp"

#include <prometheus/counter.h>

#include "common/log.hpp"
#include "dtls/credentials.hpp"
#include "dtls/output.hpp"
#include "dtls/server_context.hpp"
#include "dtls/session_state.hpp"
#include "dtls/wire.hpp"
#include "metrics/metrics.hpp"
#include "net/udp_socket.hpp"
#include "server/cid_index.hpp"
#include "server/dtls_tls.hpp"
#include "server/live_hello.hpp"
#include "server/persist.hpp"

namespace coapgw::server {

using metrics::BadReason;

struct DtlsTransport::Rehandshake {
  std::unique_ptr<dtls::Engine> engine;
  Address local;
  int ifindex = -1;
  std::uint8_t endpoint = 0;
};

DtlsTransport::DtlsTransport(Settings settings, Host& host, session::Table& table, metrics::Metrics& metrics)
    : settings_(settings),
      host_(host),
      table_(table),
      metrics_(metrics),
      out_(std::make_unique<dtls::Output>()),
      send_out_(std::make_unique<dtls::Output>()),
      backoff_(settings_.backoff) {}

DtlsTransport::~DtlsTransport() = default;

void DtlsTransport::clear() {
  handshaking_.clear();
  rehandshakes_.clear();
}

void DtlsTransport::forget(session::Session& s) {
  forget_cid(s);
  forget_registry_session(s);
  if (handshaking_.erase(&s) != 0) s.release();
}

bool DtlsTransport::send(session::Session& s, std::span<const std::byte> message) {
  auto* engine = engine_of(s);
  if (engine == nullptr || engine->state() != dtls::Engine::State::established) return false;
  auto& out = *send_out_;
  out.clear();
  engine->send(message, out);
  send_datagrams(s.endpoint(), s.addr_remote(), s.addr_local(), out);
  // The engine ends a session whose write sequence is exhausted (renegotiation is refused).
  return out.closed && !s.closed();
}

dtls::Standing DtlsTransport::standing_of(const dtls::Engine& engine, bool registry_keyed) const {
  return standing_of(engine.credentials(), registry_keyed);
}

// A completed handshake: full, or abbreviated with an RFC 5077 ticket (dtls.tickets).
metrics::HandshakeResult DtlsTransport::handshake_result(const dtls::Engine& engine) {
  return engine.resumed() ? metrics::HandshakeResult::resumed : metrics::HandshakeResult::ok;
}

bool DtlsTransport::stale_credentials(const dtls::Engine& engine) const {
  return engine.credentials_generation() != context_->credentials_generation() &&
         standing_of(engine) != dtls::Standing::valid;
}

std::size_t DtlsTransport::apply_credentials(std::shared_ptr<const dtls::PskStore> store,
                                             std::shared_ptr<const dtls::TrustStore> trust) {
  if (!context_) return 0;
  context_->set_credentials(std::move(store), std::move(trust));
  // Established sessions, idle or not. Handshakes still running are checked when they complete
  // (their generation is older now), see handle_output and finish_rehandshake.
  std::vector<session::Session*> revoked;
  table_.for_each([&](session::Session& s) {
    if (s.proto() != session::Proto::dtls) return;
    auto* engine = engine_of(s);
    if (engine == nullptr || engine->state() != dtls::Engine::State::established) return;
    const auto* tls = static_cast<const DtlsTls*>(s.tls_state());
    if (auto standing = standing_of(*engine, tls->registry_keyed); standing != dtls::Standing::valid) {
      log::debug("dtls session revoked on reload (" + std::string(dtls::to_string(standing)) + ") identity=" +
                     engine->identity(),
                 s.id());
      revoked.push_back(&s);
    }
  });
  for (auto* s : revoked) close(*s, session::CloseReason::revoked);
  return revoked.size();
}



void DtlsTransport::send_datagrams(std::uint8_t endpoint, const Address& peer, const Address& local,
                                   dtls::Output& out) {
  for (auto& d : out.datagrams) host_.send_datagram(endpoint, peer, local, d);
}

bool DtlsTransport::hello_may_replace(session::Session& s, session::TimePoint now) {
  auto* tls = static_cast<DtlsTls*>(s.tls_state());
  using V = live_hello::Verdict;
  switch (live_hello::decide(now, tls->last_authenticated, tls->hello_probe_sent)) {
    case V::handshake:
      return true;
    case V::probe:
      // A CoAP ping through the session: a device that still holds it answers with an RST, an
      // authenticated record that a forger cannot make.
      tls->hello_probe_sent = now;
      host_.ping(s);
      break;
    case V::drop_live:
    case V::drop_waiting:
      break;
  }
  host_.count_bad(BadReason::hello_for_live_session, 1);
  return false;
}

void DtlsTransport::on_datagram(const Arrival& at, const net::ReceivedDatagram& d, session::TimePoint now) {
  if (!context_) return;
  if (cids_ && on_cid_datagram(at, d, now)) return;  // RFC 9146: found by CID (cid_path.cpp)
  session::Key key{d.peer, at.port, session::Proto::dtls, at.endpoint};
  auto& out = *out_;
  out.clear();
  // Not touched yet: only a record that authenticates counts as activity (mark_used below), so
  // spoofed datagrams from a device's address cannot keep its session from expiring.
  session::Session* s = table_.find(key);
  bool hello = dtls::looks_like_client_hello(d.data);
  if (!rehandshakes_.empty() && rehandshakes_.count(key) != 0 && !hello) {
    on_rehandshake_datagram(at, s, d, now);
    return;
  }
  if (s != nullptr && !(hello && s->state() == session::State::established)) {
    // dtls.psk.lookup: a handshake whose key is still being asked of the registry waits (registry_path.cpp).
    if (lookup_ && s->state() == session::State::handshake && hold_for_key(*s, at, d, now)) return;
    feed(*s, d.data, d.ifindex, d.local, at.wildcard, now);
    return;
  }
  if (!hello) {
    if (restored_ != nullptr && !restored_->empty()) {
      RestoreMiss miss;
      if (auto* r = host_.draining() ? nullptr : restore(at, d, out, now, miss)) {
        handle_output(*r, out, now);
        return;
      }
      if (miss.held) return;
      if (miss.bad_records != 0) {
        host_.count_bad(BadReason::dtls_bad_record, miss.bad_records);
        return;
      }
    }
    host_.count_bad(BadReason::dtls_no_session, 1);
    return;
  }
  if (host_.draining()) return;
  if (s != nullptr && !hello_may_replace(*s, now)) return;
  // A ClientHello: stateless until it carries a valid cookie. For the address of an established
  // session whose device is gone (hello_may_replace) this goes through the same cookie exchange, so
  // a spoofed ClientHello only earns a HelloVerifyRequest sent to the real owner of the address.
  // At dtls.max_handshakes a device with a valid cookie gets a fresh HelloVerifyRequest (at most one
  // a second per address and port), not silence: see HelloVerdict::busy.
  const bool busy = handshaking_.size() + rehandshakes_.size() >= settings_.max_handshakes;
  auto result = context_->on_hello(d.peer, d.data, out, now, busy);
  using V = dtls::ServerContext::HelloVerdict;
  switch (result.verdict) {
    case V::busy:
      metrics_.dtls_handshakes(metrics::HandshakeResult::rejected).Increment();
      if (!busy_limiter_->allow(d.peer, now)) return;  // dropped: the device's timer retries
      metrics_.hello_verify_requests().Increment();
      send_datagrams(at.endpoint, d.peer, d.local, out);
      return;
    case V::hello_verify_sent:
    case V::bad_cookie:
      if (!hello_limiter_->allow(d.peer, now)) {
        // Forged ClientHellos must not turn us into a stream of datagrams at a device.
        host_.count_bad(BadReason::hello_rate_limited, 1);
        return;
      }
      metrics_.hello_verify_requests().Increment();
      send_datagrams(at.endpoint, d.peer, d.local, out);
      return;
    case V::not_client_hello:
    case V::malformed:
      host_.count_bad(BadReason::dtls_malformed_hello, 1);
      return;
    case V::accepted:
      break;
  }
  if (backoff_.blocked(d.peer, now)) {
    // The address proved it is the sender (the cookie), and its handshakes kept failing.
    metrics_.dtls_handshakes(metrics::HandshakeResult::backoff).Increment();
    return;
  }
  if (handshaking_.size() + rehandshakes_.size() >= settings_.max_handshakes) {
    metrics_.dtls_handshakes(metrics::HandshakeResult::rejected).Increment();
    return;  // dropped: the device retries; established sessions are unaffected
  }
  if (settings_.max_handshakes_per_ip != 0 && handshakes_of_ip(d.peer) >= settings_.max_handshakes_per_ip) {
    // One address (which passed the cookie exchange, so it is real) must not hold every slot.
    metrics_.dtls_handshakes(metrics::HandshakeResult::rejected).Increment();
    host_.count_bad(metrics::BadReason::handshakes_per_ip, 1);
    return;
  }
  if (s != nullptr) {
    // The address has a live session: run the new handshake beside it and replace the session only
    // when this one completes (see finish_rehandshake).
    auto rh = std::make_unique<Rehandshake>();
    rh->engine = std::move(result.engine);
    rh->local = d.local;
    rh->ifindex = d.ifindex;
    rh->endpoint = at.endpoint;
    rehandshakes_[key] = std::move(rh);
    send_datagrams(at.endpoint, d.peer, d.local, out);
    return;
  }
  s = table_.create_server(key, d.local, d.ifindex, now, session::State::handshake);
  if (s == nullptr) {
    metrics_.dtls_handshakes(metrics::HandshakeResult::rejected).Increment();
    host_.count_bad(BadReason::session_table_full, 1);
    return;
  }
  rehandshakes_.erase(key);  // a replacement handshake for a session that is gone meanwhile
  s->set_tls(std::make_unique<DtlsTls>(std::move(result.engine)));
  handshaking_.insert(&s->reference());  // a handshake is pending traffic: never idle, never reclaimed
  handle_output(*s, out, now);
}

void DtlsTransport::feed(session::Session& s, std::span<const std::byte> data, int ifindex, const Address& local,
                         bool wildcard, session::TimePoint now) {
  auto& out = *out_;
  out.clear();
  auto* engine = engine_of(s);
  auto bad_before = engine->bad_records();
  engine->on_datagram(data, out, now);
  // Records that failed to authenticate, were replayed or malformed: dropped by the engine.
  if (auto bad = engine->bad_records() - bad_before; bad != 0) host_.count_bad(BadReason::dtls_bad_record, bad);
  if (!out.plaintexts.empty() || out.established) {
    table_.mark_used(s, now);
    s.set_ifindex(ifindex);
    if (wildcard) s.set_addr_local(local);
  }
  handle_output(s, out, now);
}

void DtlsTransport::handle_output(session::Session& s, dtls::Output& out, session::TimePoint now) {
  send_datagrams(s.endpoint(), s.addr_remote(), s.addr_local(), out);
  if (out.established || !out.plaintexts.empty()) static_cast<DtlsTls*>(s.tls_state())->last_authenticated = now;
  if (out.established && stale_credentials(*engine_of(s))) {
    // Its key or certificate was looked up before a reload that revoked it.
    metrics_.dtls_handshakes(metrics::HandshakeResult::failed).Increment();
    log::debug("dtls handshake completed with revoked credentials, closing identity=" +
                   std::string(s.tls_state()->identity()),
               s.id());
    close(s, session::CloseReason::revoked);  // may free s
    return;
  }
  if (out.established && !register_cid(s)) {
    // Another live session holds the CID issued to this one (issued while both were handshaking).
    metrics_.dtls_handshakes(metrics::HandshakeResult::failed).Increment();
    close(s, session::CloseReason::tls_failed);  // may free s
    return;
  }
  if (out.established) {
    ++handshakes_completed_;
    backoff_.on_success(s.addr_remote());
    set_device_identity(s);
    host_.identified(s);
    note_registry_session(s);
    s.set_state(session::State::established);
    metrics_.dtls_handshakes(handshake_result(*engine_of(s))).Increment();
    log::debug("dtls established identity=" + std::string(s.tls_state()->identity()), s.id());
    if (handshaking_.erase(&s) != 0) s.release();
  }
  // Application records: each is one CoAP message. The Output is not touched by sends (they use
  // their own), so iterating it here is safe.
  for (auto& plain : out.plaintexts) {
    if (s.closed()) break;
    host_.deliver(s, plain, now);
  }
  if (out.closed && !s.closed()) {
    auto reason = session::CloseReason::peer_closed;
    bool in_handshake = handshaking_.count(&s) != 0;
    switch (out.failure) {
      case dtls::Failure::none:
        break;
      case dtls::Failure::handshake_timeout:
        reason = session::CloseReason::handshake_timeout;
        break;
      case dtls::Failure::sequence_exhausted:
        reason = session::CloseReason::disconnected;  // we ended it: no sequence numbers left
        break;
      default:
        reason = session::CloseReason::tls_failed;
        break;
    }
    if (in_handshake) {
      backoff_.on_failure(s.addr_remote(), now);  // timeouts too: a half-open handshake holds a slot
      metrics_.dtls_handshakes(out.failure == dtls::Failure::handshake_timeout
                                   ? metrics::HandshakeResult::timeout
                                   : metrics::HandshakeResult::failed)
          .Increment();
      log::debug("dtls handshake failed: " + std::string(dtls::to_string(out.failure)) + " peer=" +
                     s.addr_remote().to_string(),
                 s.id());
    }
    table_.close(s, reason);  // may free s
  }
}

void DtlsTransport::on_rehandshake_datagram(const Arrival& at, session::Session* old, const net::ReceivedDatagram& d,
                                            session::TimePoint now) {
  session::Key key{d.peer, at.port, session::Proto::dtls, at.endpoint};
  auto& rh = *rehandshakes_[key];
  // Epoch 0 records belong to the new handshake. Anything else is tried on the live session first
  // and goes to the new handshake only if the live session cannot authenticate it (the client's
  // Finished at the new epoch 1).
  bool epoch0 = d.data.size() >= 5 && d.data[3] == std::byte{0} && d.data[4] == std::byte{0};
  auto& out = *out_;
  if (!epoch0 && old != nullptr && !old->closed()) {
    auto* engine = engine_of(*old);
    auto bad_before = engine->bad_records();
    out.clear();
    engine->on_datagram(d.data, out, now);
    bool rejected = engine->bad_records() > bad_before && out.plaintexts.empty();
    if (!rejected) {
      handle_output(*old, out, now);
      return;
    }
  }
  out.clear();
  rh.engine->on_datagram(d.data, out, now);
  send_datagrams(at.endpoint, d.peer, rh.local, out);
  if (out.established) {
    // Application records in the datagram that completed the handshake belong to the new session.
    if (auto* replaced = finish_rehandshake(key, now)) {
      for (auto& plain : out.plaintexts) {
        if (replaced->closed()) break;
        host_.deliver(*replaced, plain, now);
      }
    }
  } else if (out.closed) {
    backoff_.on_failure(d.peer, now);
    metrics_.dtls_handshakes(out.failure == dtls::Failure::handshake_timeout ? metrics::HandshakeResult::timeout
                                                                            : metrics::HandshakeResult::failed)
        .Increment();
    rehandshakes_.erase(key);  // the live session is untouched
  }
}

std::size_t DtlsTransport::handshakes_of_ip(const Address& peer) const {
  std::size_t n = handshaking_.of_ip(peer);
  if (!rehandshakes_.empty()) {  // rare: devices that handshake again beside a live session
    const Address ip = HandshakeSet::ip_of(peer);
    for (const auto& [key, rh] : rehandshakes_) n += HandshakeSet::ip_of(key.remote) == ip ? 1 : 0;
  }
  return n;
}

session::Session* DtlsTransport::finish_rehandshake(const session::Key& key, session::TimePoint now) {
  auto it = rehandshakes_.find(key);
  auto rh = std::move(it->second);
  rehandshakes_.erase(it);
  if (stale_credentials(*rh->engine)) {
    // Begun before a reload that revoked its key or certificate: the live session stays as it is
    // (the reload checked it on its own).
    metrics_.dtls_handshakes(metrics::HandshakeResult::failed).Increment();
    log::debug("dtls rehandshake completed with revoked credentials, dropped identity=" + rh->engine->identity());
    return nullptr;
  }
  // No close_notify: the device has new keys. A session with a CID may belong to another device
  // that had this address before (behind a balancer): it is parked, not closed.
  auto* s = take_over_address(key, rh->local, rh->ifindex, now, true);
  if (s == nullptr) {
    metrics_.dtls_handshakes(metrics::HandshakeResult::rejected).Increment();
    return nullptr;
  }
  s->set_tls(std::make_unique<DtlsTls>(std::move(rh->engine)));
  static_cast<DtlsTls*>(s->tls_state())->last_authenticated = now;
  if (!register_cid(*s)) {
    metrics_.dtls_handshakes(metrics::HandshakeResult::failed).Increment();
    close(*s, session::CloseReason::tls_failed);
    return nullptr;
  }
  ++handshakes_completed_;
  backoff_.on_success(key.remote);
  set_device_identity(*s);
  host_.identified(*s);
  note_registry_session(*s);
  metrics_.dtls_handshakes(handshake_result(*engine_of(*s))).Increment();
  log::debug("dtls session replaced after a new handshake identity=" + std::string(s->tls_state()->identity()), s->id());
  return s;
}

void DtlsTransport::on_tick(session::TimePoint now) {
  if (lookup_) lookup_->on_tick(now);  // also without a DTLS listener: the stream transports share it
  if (!context_) return;
  context_->rotate_cookie_secret_if_due(now);
  for (auto it = rehandshakes_.begin(); it != rehandshakes_.end();) {
    auto t = it->second->engine->next_timer();
    if (t && *t <= now) {
      auto& out = *out_;
      out.clear();
      it->second->engine->on_timer(out, now);
      send_datagrams(it->second->endpoint, it->first.remote, it->second->local, out);
      if (out.closed) {
        backoff_.on_failure(it->first.remote, now);
        metrics_.dtls_handshakes(metrics::HandshakeResult::timeout).Increment();
        it = rehandshakes_.erase(it);
        continue;
      }
    }
    ++it;
  }
  if (handshaking_.empty()) return;
  std::vector<session::Session*> due;
  for (auto* s : handshaking_) {
    auto* engine = engine_of(*s);
    auto t = engine != nullptr ? engine->next_timer() : std::nullopt;
    if (t && *t <= now) due.push_back(s);
  }
  for (auto* s : due) {
    if (handshaking_.count(s) == 0) continue;
    auto& out = *out_;
    out.clear();
    engine_of(*s)->on_timer(out, now);
    handle_output(*s, out, now);
  }
}

void DtlsTransport::close(session::Session& s, session::CloseReason reason) {
  if (s.closed()) return;
  if (auto* engine = engine_of(s)) {
    auto& out = *send_out_;
    out.clear();
    engine->close(out);  // close_notify
    send_datagrams(s.endpoint(), s.addr_remote(), s.addr_local(), out);
  }
  table_.close(s, reason);  // may free s
}

}  // namespace coapgw::server
