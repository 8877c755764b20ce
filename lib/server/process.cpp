#include "server/process.hpp"

#include <openssl/opensslv.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>

#include <unistd.h>

#include <prometheus/counter.h>

#include "admin/admin_server.hpp"
#include "api/api_server.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "dtls/credentials.hpp"
#include "dtls/psk_store.hpp"
#include "dtls/server_context.hpp"
#include "dtls/session_state.hpp"
#include "upstream/forward.hpp"
#include "upstream/router.hpp"
#include "metrics/metrics.hpp"
#include "server/downlink.hpp"
#include "server/persist.hpp"
#include "server/queue_persist.hpp"
#include "server/snapshot.hpp"
#include "server/worker.hpp"

namespace coapgw::server {

using namespace std::chrono_literals;

namespace {

// A persisted session whose key or certificate no longer stands under `snap` is not restored. One
// saved with a key from the device registry waits, with dtls.psk.lookup, for the registry's answer
// when its device comes back (DtlsTransport::restored_standing).
bool credentials_stand(const dtls::SessionState& state, const Snapshot& snap) {
  const dtls::Credentials credentials{state.identity, state.psk_key, state.peer_certs};
  const auto standing = dtls::check(credentials, snap.psk.get(), snap.dtls.trust.get());
  return standing == dtls::Standing::valid ||
         (standing == dtls::Standing::identity_unknown && state.registry_keyed && state.peer_certs.empty() &&
          !snap.config->dtls.psk.lookup.url.empty());
}

bool persisted_session_stands(std::span<const std::byte> bytes, const Snapshot& snap) {
  auto state = dtls::deserialize(bytes);
  return state && credentials_stand(*state, snap);
}

}  // namespace

struct Process::Impl {
  std::shared_ptr<const Snapshot> snapshot;  // the configuration the workers run on
  std::unique_ptr<metrics::Metrics> metrics;
  std::unique_ptr<session::Budget> budget;
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<admin::AdminServer> admin;
  std::unique_ptr<RuntimeDownlink> downlink;  // the backend API's way to the devices
  std::unique_ptr<api::ApiServer> api;        // listen.api; stopped before the workers
  std::vector<Address> coap_bound, coaps_bound, coap_tcp_bound, coaps_tcp_bound, coap_ws_bound, coaps_ws_bound;
  persist::RestoredPool restored;
  bool started = false;
};

Process::Process(std::shared_ptr<const Snapshot> snapshot) : impl_(std::make_unique<Impl>()) {
  impl_->snapshot = std::move(snapshot);
  impl_->metrics = std::make_unique<metrics::Metrics>(COAPGW_VERSION);
}

Process::~Process() { stop(); }

metrics::Metrics& Process::metrics() { return *impl_->metrics; }

bool Process::start(std::string* error) {
  const auto& snap = *impl_->snapshot;
  auto& c = *snap.config;
  unsigned n = c.threads != 0 ? c.threads : std::max(1u, std::thread::hardware_concurrency());
  impl_->budget = std::make_unique<session::Budget>(c.sessions.max);

  std::vector<Address> coap_listen = c.listen.coap, coaps_listen = c.listen.coaps;
  std::vector<Address> coap_tcp_listen = c.listen.coap_tcp, coaps_tcp_listen = c.listen.coaps_tcp;
  std::vector<Address> coap_ws_listen = c.listen.coap_ws, coaps_ws_listen = c.listen.coaps_ws;
  for (unsigned i = 0; i < n; ++i) {
    WorkerSettings ws;
    ws.index = static_cast<int>(i);
    // Worker 0 resolves port 0 to a real port; the others bind that same port (SO_REUSEPORT).
    ws.coap_listen = coap_listen;
    ws.coaps_listen = coaps_listen;
    ws.transmission = snap.coap_client.transmission;
    ws.max_message_size = c.coap.max_message_size;
    ws.max_handshakes = std::max<std::size_t>(1, (c.dtls.max_handshakes + n - 1) / n);
    ws.max_handshakes_per_ip =
        c.dtls.max_handshakes_per_ip == 0 ? 0 : std::max<std::size_t>(1, (c.dtls.max_handshakes_per_ip + n - 1) / n);
    ws.handshake_backoff = {static_cast<unsigned>(c.dtls.handshake_backoff.after), c.dtls.handshake_backoff.initial,
                            c.dtls.handshake_backoff.max, c.dtls.handshake_backoff.max_addresses};
    ws.separate_response_after = c.coap.separate_response_after;
    ws.idle_timeout = c.sessions.idle_timeout;
    ws.max_body_size = c.coap.max_body_size;
    ws.max_reassemblies = c.coap.max_reassemblies;
    ws.max_reassemblies_per_session = c.coap.max_reassemblies_per_session;
    ws.max_block_cache_bytes = c.coap.max_block_cache_bytes;
    ws.max_block_answers_per_session = c.coap.max_block_answers_per_session;
    ws.rate_limit_rps = c.devices.rate_limit.requests_per_second;  // per worker: a device's session lives on one
    ws.rate_limit_burst = c.devices.rate_limit.burst;
    ws.persist = !c.sessions.persist.file.empty();
    ws.stream = stream_settings(c, n);
    ws.stream.tcp_listen = coap_tcp_listen;
    ws.stream.tls_listen = coaps_tcp_listen;
    ws.stream.ws_listen = coap_ws_listen;
    ws.stream.wss_listen = coaps_ws_listen;
    if (!coaps_tcp_listen.empty() || !coaps_ws_listen.empty()) ws.stream.credentials = snap.dtls;
    auto w = std::make_unique<Worker>(ws, *impl_->budget, *impl_->metrics);
    if (!w->open(error)) return false;
    if (i == 0) {
      coap_listen = w->bound_addresses(session::Proto::udp);
      coaps_listen = w->bound_addresses(session::Proto::dtls);
      impl_->coap_bound = coap_listen;
      impl_->coaps_bound = coaps_listen;
      coap_tcp_listen = w->bound_addresses(session::Proto::tcp);
      coaps_tcp_listen = w->bound_addresses(session::Proto::tls);
      coap_ws_listen = w->bound_addresses(session::Proto::ws);
      coaps_ws_listen = w->bound_addresses(session::Proto::wss);
      impl_->coap_ws_bound = coap_ws_listen;
      impl_->coaps_ws_bound = coaps_ws_listen;
      impl_->coap_tcp_bound = coap_tcp_listen;
      impl_->coaps_tcp_bound = coaps_tcp_listen;
    }
    if (!coaps_listen.empty()) {
      std::string dtls_error;
      auto ctx = dtls::ServerContext::create(snap.dtls, &dtls_error);
      if (!ctx) {
        if (error) *error = "dtls: " + dtls_error;
        return false;
      }
      w->set_dtls(std::move(ctx));
    }
    // dtls.psk.lookup serves coaps (DTLS) and coaps+tcp / coaps+ws (TLS) alike.
    if (!coaps_listen.empty() || !coaps_tcp_listen.empty() || !coaps_ws_listen.empty()) {
      if (const auto& lookup = c.dtls.psk.lookup; !lookup.url.empty()) {
        // dtls.psk.lookup: each worker asks the registry for its own handshakes (max_in_flight shared).
        PskLookup::Settings ls;
        ls.url = lookup.url;
        ls.timeout = lookup.timeout;
        ls.cache.cache_ttl = lookup.cache_ttl;
        ls.cache.negative_ttl = lookup.negative_ttl;
        ls.max_in_flight = std::max<std::size_t>(1, (lookup.max_in_flight + n - 1) / n);
        try {
          w->enable_psk_lookup(std::move(ls));
        } catch (const std::exception& e) {
          if (error) *error = std::string("dtls.psk.lookup: ") + e.what();
          return false;
        }
      }
    }
    try {
      w->install_router(w->make_router(snap.routes, snap.coap_client));
    } catch (const std::exception& e) {
      if (error) *error = std::string("routes: ") + e.what();
      return false;
    }
    auto* wp = w.get();
    impl_->metrics->add_session_source([wp](metrics::SessionCounts& out) {
      const auto& counts = wp->counts();
      for (std::size_t p = 0; p < metrics::count<metrics::Proto>; ++p) {
        auto sp = static_cast<session::Proto>(p + 1);
        for (int t = 0; t < 3; ++t) {
          auto st = static_cast<session::Type>(t + 1);
          for (int s = 0; s < 5; ++s)
            out.sessions[p][t][s] += counts.sessions(sp, st, static_cast<session::State>(s));
        }
        out.idle[p] += counts.idle_of(sp);
      }
    });
    impl_->workers.push_back(std::move(w));
  }
  std::vector<Worker*> peers;
  for (auto& w : impl_->workers) peers.push_back(w.get());
  for (auto& w : impl_->workers) w->set_peers(peers);
  if (c.listen.api && !start_api(peers, error)) return false;

  if (c.listen.admin) {
    admin::AdminSettings as;
    as.listen = *c.listen.admin;
    as.max_connections = c.admin.max_connections;
    as.request_timeout = c.admin.request_timeout;
    as.max_request_bytes = c.admin.max_request_bytes;
    auto* self = impl_.get();
    impl_->admin = std::make_unique<admin::AdminServer>(
        as, *impl_->metrics,
        [self](std::uint64_t after, std::size_t limit, std::function<void(std::vector<admin::SessionInfo>)> done) {
          // Ask every worker on its own thread; merge when the last one answered.
          struct Merge {
            std::mutex m;
            std::vector<admin::SessionInfo> all;
            std::size_t remaining;
            std::function<void(std::vector<admin::SessionInfo>)> done;
          };
          auto merge = std::make_shared<Merge>();
          merge->remaining = self->workers.size();
          merge->done = std::move(done);
          for (auto& w : self->workers) {
            auto* wp = w.get();
            wp->post([wp, merge, after, limit] {
              wp->list_sessions(after, limit, [merge, limit](std::vector<admin::SessionInfo> part) {
                std::lock_guard lock(merge->m);
                for (auto& i : part) merge->all.push_back(std::move(i));
                if (--merge->remaining == 0) {
                  std::sort(merge->all.begin(), merge->all.end(), [](auto& a, auto& b) { return a.id < b.id; });
                  if (merge->all.size() > limit) merge->all.resize(limit);
                  merge->done(std::move(merge->all));
                }
              });
            });
          }
        });
    if (!impl_->admin->start(error)) return false;
  }

  if (!c.sessions.persist.file.empty()) {
    auto path = config::resolve_path(c, c.sessions.persist.file);
    std::string why;
    if (::access(path.c_str(), F_OK) != 0) {
      log::info("no persisted sessions at " + path);
    } else if (auto r = persist::read_file(path, c.sessions.persist.max_age, &why)) {
      std::size_t restored = 0, revoked = 0;
      for (auto& e : r->entries) {
        auto state = dtls::deserialize(e.state);
        if (!state) continue;
        // Revocation holds across the restart: a key removed or changed, or a certificate that no
        // longer chains to the CA (or expired), while we were down.
        if (!credentials_stand(*state, snap)) {
          ++revoked;
          log::debug("persisted dtls session not restored (revoked) identity=" + state->identity);
          continue;
        }
        impl_->restored.add(state->peer, std::move(e.state), e.last_seen_unix_ms, state->local_cid);
        ++restored;
      }
      if (revoked != 0)
        impl_->metrics->sessions_closed(metrics::Proto::dtls, metrics::CloseReason::revoked)
            .Increment(static_cast<double>(revoked));
      log::info("restored " + std::to_string(restored) + " DTLS sessions from " + path + " (" +
                std::to_string(r->skipped_stale) + " older than max_age skipped, " + std::to_string(revoked) +
                " revoked)");
    } else {
      log::warn("not restoring sessions: " + why);
    }
    // Read once: a crash later must not bring back keys that were already used.
    ::unlink(path.c_str());
  }
  for (auto& w : impl_->workers) w->set_restored_pool(&impl_->restored);
  for (auto& w : impl_->workers) w->start();
  impl_->started = true;
  if (impl_->admin) impl_->admin->set_ready(true);
  log::info("coapgw " COAPGW_VERSION " started: " + std::to_string(n) + " worker(s), " + OPENSSL_VERSION_TEXT);
  for (auto& a : impl_->coap_bound) log::info("listening coap://" + a.to_string());
  for (auto& a : impl_->coaps_bound) log::info("listening coaps://" + a.to_string());
  for (auto& a : impl_->coap_tcp_bound) log::info("listening coap+tcp://" + a.to_string());
  for (auto& a : impl_->coaps_tcp_bound) log::info("listening coaps+tcp://" + a.to_string());
  for (auto& a : impl_->coap_ws_bound) log::info("listening coap+ws://" + a.to_string() + "/.well-known/coap");
  for (auto& a : impl_->coaps_ws_bound) log::info("listening coaps+ws://" + a.to_string() + "/.well-known/coap");
  if (impl_->admin) log::info("admin http://" + impl_->admin->local_address().to_string());
  if (impl_->api) log::info("api http://" + impl_->api->local_address().to_string());
  return true;
}

bool Process::start_api(const std::vector<Worker*>& workers, std::string* error) {
  const auto& c = *impl_->snapshot->config;
  const auto& g = c.api.groups;
  impl_->downlink = std::make_unique<RuntimeDownlink>(
      workers, GroupSettings{g.interface, g.hops, g.max_responses, g.max_in_flight}, *impl_->metrics);
  impl_->api = std::make_unique<api::ApiServer>(api::ApiSettings::from_config(c), *impl_->metrics, *impl_->downlink);
  restore_downlink_queue(c, *impl_->api);
  std::string why;
  if (!impl_->api->start(&why)) {
    if (error) *error = "listen.api: " + why;
    return false;
  }
  // A device's message sends what is queued for it; nothing queued costs one atomic load.
  for (auto* w : workers) {
    w->set_device_heard([api = impl_->api.get()](const session::Session& s) {
      if (api->anything_queued()) api->device_heard(device_ref_of(s));
    });
  }
  return true;
}

bool Process::reload(std::shared_ptr<const config::Config> config, std::string* error) {
  // Everything is prepared here, on the reloading thread: the PSK store, the client CA, the DTLS
  // context check, every route (resolution, TLS contexts, files). Any part failing refuses the
  // whole reload before a worker changed anything.
  std::shared_ptr<const Snapshot> next;
  try {
    next = prepare(std::move(config));
  } catch (const config::ConfigError& e) {
    if (error) {
      error->clear();
      for (auto& issue : e.issues) *error += (error->empty() ? "" : "; ") + issue.key_path + ": " + issue.message;
    }
    count_failed_reload();
    return false;
  } catch (const std::exception& e) {
    if (error) *error = e.what();
    count_failed_reload();
    return false;
  }
  std::vector<std::shared_ptr<upstream::Router>> routers;
  try {
    for (auto& w : impl_->workers) routers.push_back(w->make_router(next->routes, next->coap_client));
  } catch (const std::exception& e) {
    for (std::size_t i = 0; i < routers.size(); ++i) impl_->workers[i]->discard_router(std::move(routers[i]));
    if (error) *error = std::string("routes: ") + e.what();
    count_failed_reload();
    return false;
  }
  // From here on nothing fails: every worker switches to the new snapshot.
  auto& old = *impl_->snapshot->config;
  auto& fresh = *next->config;
  if (old.threads != fresh.threads || old.listen.coap.size() != fresh.listen.coap.size() ||
      old.listen.coaps.size() != fresh.listen.coaps.size() || old.sessions.max != fresh.sessions.max)
    log::warn("reload: threads, listeners and sessions.max change only on restart");
  if (impl_->snapshot->dtls.cert_file != next->dtls.cert_file || impl_->snapshot->dtls.key_file != next->dtls.key_file ||
      impl_->snapshot->dtls.ca_file.empty() != next->dtls.ca_file.empty())
    log::warn("reload: dtls.pki.cert and private_key, and turning dtls.pki.ca on or off, change only on restart "
              "(the CA file itself is re-read)");
  log::set_level(fresh.log.level);
  // Persisted sessions that no device claimed yet are checked like live ones.
  auto revoked = impl_->restored.drop_if(
      [&](std::span<const std::byte> state) { return !persisted_session_stands(state, *next); });
  if (revoked != 0) {
    impl_->metrics->sessions_closed(metrics::Proto::dtls, metrics::CloseReason::revoked)
        .Increment(static_cast<double>(revoked));
    log::info("reload: " + std::to_string(revoked) + " persisted DTLS sessions revoked");
  }
  for (std::size_t i = 0; i < impl_->workers.size(); ++i) {
    auto* wp = impl_->workers[i].get();
    wp->post([wp, psk = next->psk, trust = next->dtls.trust, router = std::move(routers[i])]() mutable {
      wp->apply_credentials(psk, trust);
      wp->install_router(std::move(router));  // its file sinks were just opened: log rotation done
    });
  }
  if (impl_->api) impl_->api->reload(fresh.api);  // tokens (and tokens_file) re-read
  impl_->snapshot = next;
  impl_->metrics->config_reloads(true).Increment();
  log::info("configuration reloaded: " + std::to_string(next->psk->size()) + " PSK identities, " +
            std::to_string(next->routes.size()) + " routes");
  return true;
}

void Process::count_failed_reload() { impl_->metrics->config_reloads(false).Increment(); }

void Process::drain() {
  if (!impl_->started) return;
  if (impl_->admin) impl_->admin->set_ready(false);
  for (auto& w : impl_->workers) w->begin_drain();
  auto deadline = std::chrono::steady_clock::now() + impl_->snapshot->config->shutdown.drain_timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::size_t busy = 0;
    for (auto& w : impl_->workers) busy += w->in_flight();
    if (busy == 0) break;
    std::this_thread::sleep_for(20ms);  // polling a counter with a deadline, not synchronisation
  }
}

void Process::stop() {
  if (impl_->admin) impl_->admin->stop();
  if (impl_->api) impl_->api->stop();  // before the workers its downlinks run on
  impl_->metrics->clear_session_sources();  // they read the workers' tables, freed below
  for (auto& w : impl_->workers) w->request_stop();
  for (auto& w : impl_->workers) w->stop();
  auto& c = *impl_->snapshot->config;
  if (impl_->started && impl_->api) save_downlink_queue(c, *impl_->api);
  if (impl_->started && !c.sessions.persist.file.empty()) {
    std::vector<persist::Entry> all;
    for (auto& w : impl_->workers)
      for (auto& e : w->take_exported()) all.push_back(std::move(e));
    auto path = config::resolve_path(c, c.sessions.persist.file);
    std::string why;
    if (persist::write_file(path, all, &why))
      log::info("persisted " + std::to_string(all.size()) + " DTLS sessions to " + path);
    else
      log::error("could not persist sessions: " + why);
  }
  impl_->workers.clear();
  impl_->admin.reset();
  impl_->api.reset();
  impl_->downlink.reset();
  impl_->started = false;
}

std::vector<Address> Process::coap_addresses() const { return impl_->coap_bound; }
std::vector<Address> Process::coaps_addresses() const { return impl_->coaps_bound; }
std::optional<Address> Process::admin_address() const {
  if (!impl_->admin) return std::nullopt;
  return impl_->admin->local_address();
}

std::optional<Address> Process::api_address() const {
  if (!impl_->api) return std::nullopt;
  return impl_->api->local_address();
}

bool Process::workers_alive() const {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
                 .count();
  for (auto& w : impl_->workers)
    if (now - w->heartbeat_ms() > 5000) return false;
  return true;
}

}  // namespace coapgw::server
