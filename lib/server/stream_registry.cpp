// The stream transports' side of the device registry (dtls.psk.lookup over coaps+tcp and coaps+ws;
// see psk_lookup.hpp and, for DTLS, registry_path.cpp). A TLS client names its PSK identity in the
// clear (TLS 1.3 ClientHello, TLS 1.2 ClientKeyExchange; transport::TlsPskIdentity reads it); when
// that identity is neither in the local keys nor fresh in the registry cache, the connection's
// bytes are held (TcpStreamListener::max_held_bytes) while PskLookup asks the registry, and handed
// to the handshake when the answer comes, on this worker's thread. StreamTls's PSK callback then
// finds the key in the cache, or refuses the handshake (unknown, banned, no usable answer). Sessions
// made with a registry key carry its tenant and are indexed by identity in PskLookup, so that a
// later answer that bans the device, forgets it or changes its key ends them with `revoked`.
#include "common/log.hpp"
#include "server/dtls_tls.hpp"
#include "server/stream_transport.hpp"
#include "session/table.hpp"

namespace coapgw::server {

void StreamTransport::set_psk_lookup(PskLookup* lookup) {
  lookup_ = lookup;
  if (tls_) tls_->set_registry(lookup_ ? &lookup_->cache() : nullptr);
}

bool StreamTransport::wait_for_key(Listener& l, transport::StreamLink& link, std::string_view identity) {
  if (!lookup_ || !tls_) return false;
  if (const auto& local = tls_->psk_store(); local && local->find(identity).has_value()) return false;
  session::Session* s = session_of(l, link);
  if (s == nullptr) return false;
  auto make_held = [&] {
    PskLookup::Held h;
    h.key = s->key();
    h.local = link.local();
    h.stream = true;
    return h;
  };
  // proceed: the cache answers; dropped (too many lookups): the handshake goes on and fails for
  // want of a key, counted as a lookup error, as a DTLS device's dropped flight would.
  return lookup_->need_key(identity, make_held, session::Clock::now()) == PskLookup::Verdict::held;
}

void StreamTransport::on_key_answer(const std::string& identity, const std::vector<PskLookup::Held>& held) {
  for (const auto& h : held) {
    // The connection may have ended (handshake timeout, peer gone) while it waited.
    session::Session* s = table_.find(h.key);
    if (s == nullptr) continue;
    if (auto it = link_of_.find(s->id()); it != link_of_.end()) it->second->resume();
  }
  if (!tls_) return;
  const auto* live = lookup_ ? lookup_->sessions_of(identity) : nullptr;
  if (live == nullptr) return;
  std::vector<session::Session*> revoked;
  for (auto* s : *live) {
    auto it = peers_.find(s->id());
    if (it != peers_.end() && !tls_->stands(it->second)) revoked.push_back(s);
  }
  for (auto* s : revoked) {
    log::debug("tls session revoked by the device registry identity=" + identity, s->id());
    table_.close(*s, session::CloseReason::revoked);  // forget() ends the connection
  }
}

void StreamTransport::note_registry_session(session::Session& s, const StreamTls::Peer& peer, DeviceData& device) {
  if (!lookup_) return;
  if (const auto* entry = lookup_->cache().find(peer.identity)) device.tenant = entry->tenant;
  lookup_->session_up(s, peer.identity);
}

void StreamTransport::forget_registry_session(session::Session& s) {
  auto it = peers_.find(s.id());
  if (!lookup_ || it == peers_.end() || !it->second.registry_keyed) return;
  it->second.registry_keyed = false;
  lookup_->session_down(s, it->second.identity);
}

}  // namespace coapgw::server
