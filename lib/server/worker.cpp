#include "server/worker.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <malloc.h>

#include <algorithm>

#include "common/log.hpp"
#include "dtls/crypto_heap.hpp"
#include "dtls/engine.hpp"
#include "dtls/output.hpp"
#include "dtls/server_context.hpp"
#include "dtls/session_state.hpp"
#include "upstream/coap_upstream.hpp"
#include "upstream/router.hpp"
#include "metrics/metrics.hpp"
#include "net/udp_socket.hpp"
#include "server/bad_input.hpp"
#include "server/cid_index.hpp"
#include "server/device_links.hpp"
#include "server/dtls_tls.hpp"
#include "server/persist.hpp"
#include "server/worker_internal.hpp"

#include <prometheus/counter.h>


namespace coapgw::server {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {
constexpr auto tick_interval = 50ms;
// At stop, how long the loop keeps running to write the stream connections' last Release/Abort.
constexpr auto kStreamFlushBound = 1s;

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

struct Worker::Timer {
  explicit Timer(asio::io_context& io) : timer(io) {}
  asio::steady_timer timer;
};

Worker::Worker(WorkerSettings settings, session::Budget& budget, metrics::Metrics& metrics)
    : settings_(std::move(settings)),
      budget_(budget),
      metrics_(metrics),
      io_(std::make_unique<asio::io_context>(1)),
      tick_timer_(std::make_unique<Timer>(*io_)),
      receive_batch_(std::make_unique<net::ReceiveBatch>()),
      send_batch_(std::make_unique<net::SendBatch>()),
      exported_(std::make_unique<std::vector<persist::Entry>>()) {
  table_ = std::make_unique<session::Table>(
      this, budget_, session::Table::Settings{settings_.idle_timeout, settings_.index},
      [this](session::Session& s, const session::EventInfo& e) { on_session_event(s, e); });
  dtls_ = std::make_unique<DtlsTransport>(
      DtlsTransport::Settings{settings_.index, settings_.max_handshakes, settings_.max_handshakes_per_ip,
                              settings_.handshake_backoff, settings_.idle_timeout},
      static_cast<DtlsTransport::Host&>(*this), *table_, metrics_);
  stream_ = std::make_unique<StreamTransport>(*io_, settings_.stream, static_cast<StreamTransport::Host&>(*this),
                                              *table_, metrics_);
  heartbeat_ms_.store(steady_ms());
  role_ = std::make_unique<ServerRole>(role_settings(settings_), static_cast<ServerRole::Host&>(*this), metrics_,
                                       exchange::system_random());
  links_ = make_links();
}

ServerRoleSettings Worker::role_settings(const WorkerSettings& w) {
  ServerRoleSettings r;
  r.transmission = w.transmission;
  r.max_message_size = w.max_message_size;
  r.separate_response_after = w.separate_response_after;
  r.exchange_cache_entries = w.exchange_cache_entries;
  r.max_outstanding = w.max_outstanding;
  r.max_pending_forwards = w.max_pending_forwards;
  r.max_body_size = w.max_body_size;
  r.blockwise = BlockwiseLimits{w.max_reassemblies, w.max_reassemblies_per_session, w.max_block_cache_bytes,
                                w.max_block_answers_per_session};
  r.rate_limit = {w.rate_limit_rps, static_cast<double>(w.rate_limit_burst)};
  return r;
}

Worker::~Worker() {
  stop();
  // Sessions go before the DTLS context their engines point into, and before the router.
  table_->close_all(session::CloseReason::shutdown);  // also ends their CONs in the role's layer
  role_->drop_pending();
  dtls_->clear();
  table_.reset();
  stream_.reset();  // after the sessions, whose closing may still Release their connections
  dtls_.reset();
  role_->shutdown();  // the routers
  endpoints_.clear();
}

bool Worker::open(std::string* error) {
  auto add = [&](Address a, session::Proto proto) {
    if (settings_.index == 0) {
      // The first worker makes sure nobody else holds the port (see probe_exclusive).
      auto resolved = net::UdpSocket::probe_exclusive(a, error);
      if (!resolved) return false;
      a = *resolved;
    }
    auto socket = net::UdpSocket::open(a, error);
    if (!socket) return false;
    auto ep = std::make_unique<Endpoint>();
    ep->proto = proto;
    ep->watcher = std::make_unique<asio::posix::stream_descriptor>(*io_, socket->fd());
    ep->socket = std::move(socket);
    endpoints_.push_back(std::move(ep));
    return true;
  };
  for (auto& a : settings_.coap_listen)
    if (!add(a, session::Proto::udp)) return false;
  for (auto& a : settings_.coaps_listen)
    if (!add(a, session::Proto::dtls)) return false;
  return stream_->open(error);
}

Worker::Endpoint::~Endpoint() {
  if (watcher) watcher->release();  // the UdpSocket owns and closes the descriptor
}

std::vector<Address> Worker::bound_addresses(session::Proto proto) const {
  if (session::is_reliable(proto)) return stream_->bound_addresses(proto);
  std::vector<Address> out;
  for (auto& ep : endpoints_)
    if (ep->proto == proto) out.push_back(ep->socket->bound_address());
  return out;
}

void Worker::set_dtls(std::unique_ptr<dtls::ServerContext> context) { dtls_->set_context(std::move(context)); }

void Worker::apply_credentials(std::shared_ptr<const dtls::PskStore> store,
                               std::shared_ptr<const dtls::TrustStore> trust) {
  // The transport checks every session against the new credentials; the close_notifies of the
  // revoked ones go out at once.
  const auto revoked = dtls_->apply_credentials(store, trust) + stream_->apply_credentials(store, trust);
  send_batch_->flush();
  if (revoked != 0) log::info("reload: " + std::to_string(revoked) + " DTLS sessions revoked");
}

std::vector<persist::Entry> Worker::take_exported() {
  auto out = std::move(*exported_);
  exported_->clear();
  return out;
}

std::shared_ptr<upstream::Router> Worker::make_router(const std::vector<upstream::RouteSpec>& routes,
                                                     const upstream::CoapClientSettings& coap) {
  // Constructed here, on the caller's thread (a reload's, never this worker's): resolving, loading
  // CA files and opening sinks cannot stall the worker. A coap:// upstream arms its receive on our
  // io_context while being built; its handler runs on this worker, and the caller touches the router
  // no more once built: it only hands it over (install_router or discard_router, both on this thread).
  return std::make_shared<upstream::Router>(*io_, routes, coap);
}

void Worker::install_router(std::shared_ptr<upstream::Router> fresh) { role_->install_router(std::move(fresh)); }

void Worker::discard_router(std::shared_ptr<upstream::Router> router) {
  if (!router) return;
  post([router = std::move(router)]() mutable {
    router->shutdown();
    router.reset();
  });
}

void Worker::start() {
  heartbeat_ms_.store(steady_ms());  // alive from now: set-up before start() may have taken a while
  links_->set_plain_endpoints(plain_endpoints());
  links_->set_stream_endpoints(stream_->plain_endpoints());
  for (std::size_t i = 0; i < endpoints_.size(); ++i) do_wait(i);
  schedule_tick();
  thread_ = std::thread([this] {
    log::set_thread_worker(settings_.index);
    io_->run();
  });
}

void Worker::post(std::function<void()> fn) { asio::post(*io_, std::move(fn)); }

void Worker::begin_drain() {
  post([this] {
    draining_.store(true);
    // close_notify now to every DTLS session without an exchange in flight; the others get theirs
    // right after their answer went out (close_if_drained), or at stop() when the deadline passed.
    std::vector<session::Session*> idle_dtls;
    // With sessions.persist the DTLS sessions stay up to be exported at stop(): no close_notify.
    if (!settings_.persist) {
      table_->for_each([&](session::Session& s) {
        if (s.proto() == session::Proto::dtls && s.refcount() == 0) idle_dtls.push_back(&s);
      });
    }
    for (auto* s : idle_dtls) dtls_->close(*s, session::CloseReason::shutdown);
    stream_->begin_drain();
    send_batch_->flush();
  });
}

void Worker::close_if_drained(session::Session& s) {
  if (!draining_.load(std::memory_order_relaxed) || settings_.persist || s.closed() ||
      s.proto() != session::Proto::dtls)
    return;
  // Posted: the caller (e.g. the record loop of DtlsTransport::handle_output) may still use the session.
  // Found again by key and id, because it may be gone by then.
  post([this, key = s.key(), id = s.id()] {
    auto* again = table_->find(key);
    if (again == nullptr || again->id() != id || again->refcount() != 0) return;
    dtls_->close(*again, session::CloseReason::shutdown);
    send_batch_->flush();
  });
}

void Worker::stop() {
  request_stop();
  if (thread_.joinable()) thread_.join();
}

void Worker::request_stop() {
  if (!thread_.joinable() || stop_requested_) return;
  stop_requested_ = true;
  post([this] {
    // Whatever is still open at the end of the drain is told so (close_notify) before we go.
    std::vector<session::Session*> dtls_sessions;
    table_->for_each([&](session::Session& s) {
      if (s.proto() == session::Proto::dtls) dtls_sessions.push_back(&s);
    });
    auto steady_now = session::Clock::now();
    auto wall_now = std::chrono::system_clock::now();
    for (auto* s : dtls_sessions) {
      auto* engine = engine_of(*s);
      std::optional<dtls::SessionState> state;
      if (settings_.persist && engine != nullptr) state = engine->export_state();
      if (state) {
        // Saved under where the device was last heard (a CID session may have moved since its
        // handshake): the restored pool is keyed by it.
        state->peer = s->addr_remote();
        state->registry_keyed = static_cast<const DtlsTls*>(s->tls_state())->registry_keyed;
        // Persisted: the device keeps its session across the restart, so no close_notify.
        persist::Entry e;
        e.last_seen_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  (wall_now - (steady_now - s->last_seen())).time_since_epoch())
                                  .count();
        e.state = dtls::serialize(*state);
        if (!e.state.empty()) exported_->push_back(std::move(e));
        table_->close(*s, session::CloseReason::shutdown);
      } else {
        dtls_->close(*s, session::CloseReason::shutdown);
      }
    }
    stream_->stop();
    tick_timer_->timer.cancel();
    for (auto& ep : endpoints_) ep->watcher->cancel();
    send_batch_->flush();
    stop_after_stream_flush(session::Clock::now() + kStreamFlushBound);
  });
}

// The stream connections were told Release/Abort; their last bytes go out through the loop, so it
// runs until every connection is closed or the bound passed (a peer that stopped reading).
void Worker::stop_after_stream_flush(session::TimePoint deadline) {
  if (stream_->connections() == 0 || session::Clock::now() >= deadline) {
    io_->stop();
    return;
  }
  auto timer = std::make_shared<asio::steady_timer>(*io_, std::chrono::milliseconds(2));
  timer->async_wait([this, timer, deadline](const boost::system::error_code&) { stop_after_stream_flush(deadline); });
}

void Worker::do_wait(std::size_t index) {
  endpoints_[index]->watcher->async_wait(asio::posix::stream_descriptor::wait_read,
                                         [this, index](const boost::system::error_code& ec) {
                                           if (ec) return;
                                           on_readable(index);
                                           do_wait(index);
                                         });
}

void Worker::on_readable(std::size_t index) {
  Endpoint& ep = *endpoints_[index];
  // Bounded drain: at most a few batches per wake-up so one busy socket cannot starve timers. A
  // short batch means the kernel had nothing more: no further recvmmsg (it would only say EAGAIN);
  // a datagram arriving after it is a new edge for the wait that do_wait() arms next.
  for (int round = 0; round < 8; ++round) {
    auto batch = receive_batch_->receive(*ep.socket);
    if (batch.empty()) break;
    // One clock read per batch: every datagram in it was already queued when recvmmsg returned.
    const auto now = session::Clock::now();
    for (auto& d : batch) on_datagram(ep, static_cast<std::uint8_t>(index), d, now);
    send_batch_->flush();
    if (batch.size() < net::ReceiveBatch::slots) break;
  }
  send_batch_->flush();
}

void Worker::on_datagram(Endpoint& ep, std::uint8_t ep_index, const net::ReceivedDatagram& d,
                         session::TimePoint now) {
  if (d.truncated || d.data.size() > settings_.max_message_size + 512) {
    count_bad(BadReason::oversize);
    return;
  }
  if (ep.proto == session::Proto::dtls) {
    dtls_->on_datagram({ep_index, ep.socket->bound_address().port(), ep.socket->wildcard()}, d, now);
    return;
  }
  coap::MessageView view;
  auto err = coap::parse(d.data, view);
  if (err != coap::ParseError::ok) {
    on_malformed(ep, d, err);
    return;
  }
  session::Key key{d.peer, ep.socket->bound_address().port(), session::Proto::udp, ep_index};
  session::Session* s = table_->lookup_and_touch(key, now);
  if (s == nullptr) {
    // A stray ACK/RST creates no session.
    if (view.type == coap::Type::ack || view.type == coap::Type::rst) return;
    if (draining_.load(std::memory_order_relaxed)) {
      // Shutting down: RFC 7252 allows 5.03 with Max-Age for a temporary refusal.
      if (view.type == coap::Type::con) send_stateless_reset(ep, d, view.message_id);
      return;
    }
    // Plain CoAP needs no handshake: the session is established from the start.
    s = table_->create_server(key, d.local, d.ifindex, now, session::State::established);
    if (s == nullptr) {
      count_bad(BadReason::session_table_full);
      if (view.type == coap::Type::con) send_stateless_reset(ep, d, view.message_id);
      return;
    }
  }
  s->set_ifindex(d.ifindex);
  if (ep.socket->wildcard()) s->set_addr_local(d.local);
  role_->on_coap(*s, view, now);
}

void Worker::on_malformed(Endpoint& ep, const net::ReceivedDatagram& d, coap::ParseError error) {
  count_bad(bad_reason(error));
  // RFC 7252 4.2/4.3: a CON we cannot process is rejected with an RST; a malformed NON or anything
  // else is silently dropped.
  auto header = coap::parse_header(d.data);
  if (header && header->type == coap::Type::con) send_stateless_reset(ep, d, header->message_id);
}

void Worker::send_stateless_reset(Endpoint& ep, const net::ReceivedDatagram& d, std::uint16_t mid) {
  std::array<std::byte, 4> rst{};
  coap::MessageWriter w(rst);
  w.header(coap::Type::rst, coap::code::empty, mid, {});
  send_batch_->add(*ep.socket, d.peer, d.local, w.bytes());
  ++local_.messages_out[static_cast<int>(coap::Type::rst)];
}

void Worker::schedule_tick() {
  tick_timer_->timer.expires_after(tick_interval);
  tick_timer_->timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    on_tick();
    schedule_tick();
  });
}

void Worker::on_tick() {
  auto now = session::Clock::now();
  heartbeat_ms_.store(steady_ms(), std::memory_order_relaxed);
  table_->expire(now);
  role_->on_tick(now);  // caches, retransmissions of our CONs, separate answers due
  dtls_->on_tick(now);
  handshakes_since_trim_ += dtls_->take_handshakes_completed() + stream_->take_handshakes_completed();
  // A handshake allocates and frees tens of KB per session (OpenSSL's handshake state, freed once
  // the session runs on the lean record layer). glibc keeps such freed memory in its arenas; give it
  // back to the system every few seconds after handshakes, so resident memory follows what
  // established sessions really hold.
  if (handshakes_since_trim_ != 0 && now >= next_trim_) {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    // Not under a sanitizer, whose allocator replaces glibc's: there malloc_trim would set up
    // glibc's own arenas from a worker thread, and glibc then asserts at that thread's exit.
    ::malloc_trim(0);
#endif
    dtls::trim_crypto_heap();  // OpenSSL's own heap, when the daemon installed it
    handshakes_since_trim_ = 0;
    next_trim_ = now + std::chrono::seconds(5);
  }
  send_batch_->flush();
  stream_->flush_metrics();
  flush_metrics();
}

void Worker::flush_metrics() {
  role_->flush_metrics();  // messages in, duplicates, retransmissions
  for (int t = 0; t < 4; ++t) {
    if (auto d = local_.messages_out[t] - flushed_.messages_out[t]; d != 0)
      metrics_.messages(false, static_cast<metrics::MsgType>(t)).Increment(static_cast<double>(d));
  }
  const auto& st = table_->stats();
  for (std::size_t p = 1; p < session::proto_count; ++p) {
    if (auto d = st.reused[p] - local_.reused[p]; d != 0) {
      metrics_.sessions_reused(static_cast<metrics::Proto>(p - 1)).Increment(static_cast<double>(d));
      local_.reused[p] = st.reused[p];
    }
  }
  flushed_ = local_;
}

void Worker::on_session_event(session::Session& s, const session::EventInfo& e) {
  auto proto = static_cast<metrics::Proto>(static_cast<int>(s.proto()) - 1);  // labels.hpp: same order
  switch (e.event) {
    case session::Event::session_new:
      metrics_.sessions_created(proto).Increment();
      log::trace("session new " + s.addr_remote().to_string(), s.id());
      break;
    case session::Event::session_closed:
      drop_session_traffic(s);
      if (e.reason)
        metrics_.sessions_closed(proto, static_cast<metrics::CloseReason>(*e.reason)).Increment();
      if (log::enabled(log::Level::debug))  // not built per closed session when nobody reads it
        log::debug("session closed " + s.addr_remote().to_string() + " reason=" +
                       std::string(e.reason ? session::to_string(*e.reason) : "?"),
                   s.id());
      break;
    default:
      break;
  }
}

void Worker::count_bad(metrics::BadReason reason, std::uint64_t n) {
  metrics_.bad_messages(reason).Increment(static_cast<double>(n));
  // One warning per interval stands for a flood; the counter has the exact numbers.
  if (log::enabled(log::Level::warn)) {
    if (auto held = bad_log_.allow(session::Clock::now()))
      log::warn("dropped or rejected bad input: " + std::string(metrics::name(reason)) +
                (*held != 0 ? " (" + std::to_string(*held) + " more bad datagrams since the last warning)" : ""));
  }
}

void Worker::drop_session_traffic(session::Session& s) {
  role_->drop_session(s);  // its CONs, uploads and kept answers; forwards in flight see closed()
  links_->closed(s);
  dtls_->forget(s);
  stream_->forget(s);
}

void Worker::flush() { send_batch_->flush(); }

}  // namespace coapgw::server
