// A session restored from sessions.persist.file (the DTLS transport's RestoredPool): claimed by the
// device's first record that authenticates under the saved keys, checked against the current
// credentials, and given its place in the session table as an idle session resumed.
#include "server/dtls_transport.hpp"

#include <prometheus/counter.h>

#include "common/log.hpp"
#include "dtls/credentials.hpp"
#include "dtls/engine.hpp"
#include "dtls/server_context.hpp"
#include "dtls/session_state.hpp"
#include "metrics/metrics.hpp"
#include "net/udp_socket.hpp"
#include "server/dtls_tls.hpp"
#include "server/persist.hpp"

namespace coapgw::server {

session::Session* DtlsTransport::restore(const Arrival& at, const net::ReceivedDatagram& d, dtls::Output& out,
                                         session::TimePoint now, RestoreMiss& miss, const Address* saved_peer) {
  std::int64_t last_seen_unix_ms = 0;
  const Address& saved = saved_peer != nullptr ? *saved_peer : d.peer;
  auto bytes = restored_->take(saved, settings_.idle_timeout, &last_seen_unix_ms);
  if (!bytes) return nullptr;
  auto state = dtls::deserialize(*bytes);
  if (!state) return nullptr;
  // Our write sequence jumps ahead by 2^16: records sent after the export (there should be none)
  // can never be repeated with the same nonce.
  auto engine = dtls::Engine::import_state(*context_, *state, std::uint64_t{1} << 16);
  if (!engine) return nullptr;
  // The restored session is claimed only by a record that authenticates: a spoofed datagram from
  // the device's address leaves the state waiting for the device (the discarded engine sent
  // nothing, so importing the same state again reuses no nonce), and costs no registry lookup.
  engine->on_datagram(d.data, out, now);
  if (out.plaintexts.empty() && !out.closed) {
    miss.bad_records = engine->bad_records();
    restored_->put_back(saved, std::move(*bytes), last_seen_unix_ms);
    return nullptr;
  }
  // Checked again here, against this worker's current keys and CA: a reload may have come after
  // the restored pool was last filtered. An identity only the device registry knows waits for its
  // answer (restored_standing), the record held and the state put back meanwhile.
  const dtls::Credentials credentials{state->identity, state->psk_key, state->peer_certs};
  std::optional<dtls::Standing> standing = standing_of(credentials, false);
  bool recheck = false;
  if (*standing == dtls::Standing::identity_unknown && lookup_)
    standing = restored_standing(credentials, state->registry_keyed, at, d, now, &recheck);
  if (!standing) {
    out.clear();
    miss.held = true;
    restored_->put_back_seen(saved, std::move(*bytes));  // the record authenticated: the device is here
    return nullptr;
  }
  if (*standing != dtls::Standing::valid) {
    out.clear();
    metrics_.sessions_closed(metrics::Proto::dtls, metrics::CloseReason::revoked).Increment();
    log::debug("persisted dtls session not restored (" + std::string(dtls::to_string(*standing)) +
               ") identity=" + state->identity);
    return nullptr;
  }
  session::Key key{d.peer, at.port, session::Proto::dtls, at.endpoint};
  // Found by CID behind a balancer: the record's source may still be another CID session's address.
  auto* s = take_over_address(key, d.local, d.ifindex, now, false);
  if (s == nullptr) {
    restored_->put_back_seen(saved, std::move(*bytes));
    out.clear();
    return nullptr;
  }
  s->set_tls(std::make_unique<DtlsTls>(std::move(engine)));
  register_cid(*s);
  set_device_identity(*s);
  host_.identified(*s);
  note_registry_session(*s);
  if (recheck) lookup_->ask_again(state->identity, now);
  // A device that goes on without a handshake after our restart is an idle session resumed.
  metrics_.sessions_reused(metrics::Proto::dtls).Increment();
  log::debug("dtls session restored from the persist file identity=" + state->identity, s->id());
  return s;
}

}  // namespace coapgw::server
