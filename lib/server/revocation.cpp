// Revocation on the worker: a DTLS session lives only while the credentials it was made with still
// stand. Checked when a reload hands the worker a new PSK store or client CA (every session in the
// table: in use, idle in the pool, restored), when a persisted session is claimed by its device, and
// when a handshake that began before a reload completes (its key or certificate was looked up under
// the old configuration). A revoked session is closed with reason `revoked` (close_notify sent when
// it was established); a revoked handshake is dropped and counted as a failed handshake.
#include <prometheus/counter.h>

#include "common/log.hpp"
#include "dtls/credentials.hpp"
#include "dtls/server_context.hpp"
#include "metrics/metrics.hpp"
#include "server/worker_internal.hpp"

namespace coapgw::server {

dtls::Standing Worker::standing_of(const dtls::Engine& engine) const {
  return dtls::check(engine.credentials(), dtls_->psk_store().get(), dtls_->trust());
}

bool Worker::stale_credentials(const dtls::Engine& engine) const {
  return engine.credentials_generation() != dtls_->credentials_generation() &&
         standing_of(engine) != dtls::Standing::valid;
}

void Worker::apply_credentials(std::shared_ptr<const dtls::PskStore> store,
                               std::shared_ptr<const dtls::TrustStore> trust) {
  if (!dtls_) return;
  dtls_->set_credentials(std::move(store), std::move(trust));
  // Established sessions, idle or not. Handshakes still running are checked when they complete
  // (their generation is older now), see handle_dtls_output and finish_rehandshake.
  std::vector<session::Session*> revoked;
  table_->for_each([&](session::Session& s) {
    if (s.proto() != session::Proto::dtls) return;
    auto* engine = engine_of(s);
    if (engine == nullptr || engine->state() != dtls::Engine::State::established) return;
    if (auto standing = standing_of(*engine); standing != dtls::Standing::valid) {
      log::debug("dtls session revoked on reload (" + std::string(dtls::to_string(standing)) + ") identity=" +
                     engine->identity(),
                 s.id());
      revoked.push_back(&s);
    }
  });
  for (auto* s : revoked) close_dtls_session(*s, session::CloseReason::revoked);
  send_batch_->flush();
  if (!revoked.empty()) log::info("reload: " + std::to_string(revoked.size()) + " DTLS sessions revoked");
}

}  // namespace coapgw::server
