// The DTLS transport's side of the device registry (dtls.psk.lookup, issue 16; see psk_lookup.hpp):
// a handshake whose ClientKeyExchange names an identity that is neither in the local keys nor in the
// registry cache is held (its datagrams kept) while PskLookup asks the registry, and handed to the
// handshake when the answer comes, on this worker's thread. OpenSSL's PSK callback then finds the
// key in the cache, or refuses the handshake (unknown, banned, or no usable answer: the device
// retries). Sessions made with a registry key are indexed by identity, so that a later answer (a
// refresh when the entry expires, or another handshake's lookup) that bans the device, forgets it
// or changes its key ends them with reason `revoked`.
#include "common/log.hpp"
#include "dtls/credentials.hpp"
#include "dtls/psk_identity.hpp"
#include "dtls/server_context.hpp"
#include "net/udp_socket.hpp"
#include "server/dtls_tls.hpp"
#include "server/dtls_transport.hpp"
#include "server/psk_lookup.hpp"

namespace coapgw::server {

void DtlsTransport::set_psk_lookup(std::unique_ptr<PskLookup> lookup) {
  lookup_ = std::move(lookup);
  if (context_) context_->set_registry(lookup_ ? &lookup_->cache() : nullptr);
}

bool DtlsTransport::hold_for_key(session::Session& s, const Arrival& at, const net::ReceivedDatagram& d,
                                 session::TimePoint now) {
  const auto key = s.key();
  auto make_held = [&] {
    return PskLookup::Held{key, d.local, d.ifindex, at.wildcard, std::vector<std::byte>(d.data.begin(), d.data.end())};
  };
  if (lookup_->hold_if_waiting(key, make_held)) return true;
  const auto identity = dtls::client_key_exchange_identity(d.data);
  if (!identity) return false;
  const auto& local = context_->psk_store();
  if (local && local->find(*identity).has_value()) return false;
  return lookup_->need_key(*identity, make_held, now) != PskLookup::Verdict::proceed;
}

std::optional<dtls::Standing> DtlsTransport::restored_standing(const dtls::Credentials& credentials,
                                                              bool registry_keyed, const Arrival& at,
                                                              const net::ReceivedDatagram& d, session::TimePoint now,
                                                              bool* recheck) {
  if (lookup_->cache().find(credentials.identity) != nullptr) return standing_of(credentials, true);
  if (replaying_restore_) {
    // The registry was asked for this record. No answer (down, slow, malformed): a session saved
    // with a registry key stood when it was saved and stands until an answer says otherwise, like
    // a live one; one saved with a local key that is gone now is revoked, as a reload would.
    // An answer the cache did not keep (a full cache) is the registry not knowing the device.
    if (!lookup_->answer_failed() || !registry_keyed) return dtls::Standing::identity_unknown;
    *recheck = true;
    return dtls::Standing::valid;
  }
  auto make_held = [&] {
    PskLookup::Held h{session::Key{d.peer, at.port, session::Proto::dtls, at.endpoint}, d.local, d.ifindex,
                      at.wildcard, std::vector<std::byte>(d.data.begin(), d.data.end())};
    h.restore = true;
    return h;
  };
  if (lookup_->need_key(credentials.identity, make_held, now) == PskLookup::Verdict::proceed)
    return standing_of(credentials, true);
  return std::nullopt;  // held, or dropped (the device sends again)
}

void DtlsTransport::on_key_answer(const std::string& identity, std::vector<PskLookup::Held> held,
                                  session::TimePoint now) {
  if (!context_) return;
  for (auto& h : held) {
    if (h.restore) {
      // A record of a saved session: through the ordinary path again, now that the answer is in.
      net::ReceivedDatagram d{h.key.remote, h.local, h.ifindex, false, h.data};
      struct Replaying {
        bool& flag;
        explicit Replaying(bool& f) : flag(f) { flag = true; }
        ~Replaying() { flag = false; }
      } replaying(replaying_restore_);
      on_datagram(Arrival{h.key.endpoint, h.key.local_port, h.wildcard}, d, now);
      continue;
    }
    session::Session* s = table_.find(h.key);
    // The handshake may have timed out (or been replaced) while it waited.
    if (s == nullptr || s->closed() || s->state() != session::State::handshake) continue;
    feed(*s, h.data, h.ifindex, h.local, h.wildcard, now);
  }
  // The answer may end sessions made with an older one (banned, unknown now, another key).
  if (const auto* live = lookup_->sessions_of(identity)) {
    std::vector<session::Session*> revoked;
    for (auto* s : *live) {
      if (auto* engine = engine_of(*s); engine != nullptr && standing_of(*engine, true) != dtls::Standing::valid)
        revoked.push_back(s);
    }
    for (auto* s : revoked) {
      log::debug("dtls session revoked by the device registry identity=" + identity, s->id());
      close(*s, session::CloseReason::revoked);
    }
  }
}

void DtlsTransport::note_registry_session(session::Session& s) {
  auto* tls = static_cast<DtlsTls*>(s.tls_state());
  if (!lookup_ || tls == nullptr || tls->psk_key().empty()) return;
  const std::string& identity = tls->engine().identity();
  const auto& local = context_->psk_store();
  if (local && local->find(identity).has_value()) return;
  tls->registry_keyed = true;
  if (const auto* entry = lookup_->cache().find(identity)) tls->tenant = entry->tenant;
  lookup_->session_up(s, identity);
}

void DtlsTransport::forget_registry_session(session::Session& s) {
  auto* tls = static_cast<DtlsTls*>(s.tls_state());
  if (!lookup_ || tls == nullptr || !tls->registry_keyed) return;
  tls->registry_keyed = false;
  lookup_->session_down(s, tls->engine().identity());
}

dtls::Standing DtlsTransport::standing_of(const dtls::Credentials& credentials, bool registry_keyed) const {
  return dtls::check_with_registry(credentials, context_->psk_store().get(), context_->trust(),
                                   lookup_ ? &lookup_->cache() : nullptr, registry_keyed);
}

}  // namespace coapgw::server
