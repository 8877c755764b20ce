// coapgw::server::Worker — one shard of the gateway: an io_context run by one thread, its own
// SO_REUSEPORT socket per listen address, its own session table, duplicate cache, DTLS context,
// route table and timers. The kernel hashes each peer's 4-tuple to one socket, so a session lives on
// exactly one worker and nothing on the data path locks. Other threads talk to a worker only by
// post()ing work to it.
//
// The worker is an I/O loop plus dispatch: worker.cpp has the loop, sockets, timers, the session
// table and the plain UDP dispatch; the DTLS transport (handshakes, engines, restored sessions,
// Connection IDs, revocation) is a DtlsTransport that hands this worker whole CoAP messages. Every
// whole message goes to the worker's ServerRole (server_role.hpp: the exchange::Layer of its
// sessions, exchange and block-wise caches, request checks, routes, forwarding, answers), which
// sends through this worker (send_to). worker_admin.cpp has the admin listing.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "admin/session_info.hpp"
#include "coap/message.hpp"
#include "upstream/router.hpp"  // forward-declares asio only
#include "common/address.hpp"
#include "common/log.hpp"
#include "server/dtls_transport.hpp"
#include "server/server_role.hpp"
#include "server/stream_transport.hpp"
#include "session/table.hpp"

namespace boost::asio {
class io_context;
}
// metrics::Metrics, net::ReceivedDatagram, the dtls types and persist::RestoredPool are declared
// by server/dtls_transport.hpp.
namespace coapgw::net {
class UdpSocket;
class ReceiveBatch;
class SendBatch;
}  // namespace coapgw::net

namespace coapgw::server {

namespace persist {
struct Entry;
}
class DeviceLinks;

struct WorkerSettings {
  int index = 0;
  std::vector<Address> coap_listen;
  std::vector<Address> coaps_listen;
  StreamTransportSettings stream;  // listen.coap_tcp, listen.coaps_tcp (RFC 8323)
  exchange::TransmissionParameters transmission;
  std::size_t max_message_size = 1152;
  std::size_t max_handshakes = 1000;       // this worker's share of dtls.max_handshakes
  dtls::FailureBackoff::Settings handshake_backoff;
  std::size_t max_handshakes_per_ip = 100;  // this worker's share of dtls.max_handshakes_per_ip; 0 = none
  std::chrono::milliseconds separate_response_after{1000};
  std::size_t exchange_cache_entries = 65536;
  std::size_t max_outstanding = 10000;     // our CONs awaiting ACK, per worker
  std::size_t max_pending_forwards = 10000;
  std::size_t max_body_size = 65536;          // Block1 reassembly bound per request
  std::size_t max_reassemblies = 1000;        // concurrent Block1 reassemblies per worker
  std::size_t max_reassemblies_per_session = 4;   // ... per session
  std::size_t max_block_cache_bytes = 64u << 20;  // Block2 bodies kept per worker
  std::size_t max_block_answers_per_session = 4;  // ... per session
  std::chrono::milliseconds idle_timeout{300000};
  double rate_limit_rps = 0;          // devices.rate_limit.requests_per_second; 0 = unlimited
  std::size_t rate_limit_burst = 0;   // devices.rate_limit.burst
  bool persist = false;   // sessions.persist.file set: export DTLS sessions at stop instead of close_notify
};

class Worker : public session::Context, private ServerRole::Host, private DtlsTransport::Host,
               private StreamTransport::Host {
 public:
  Worker(WorkerSettings settings, session::Budget& budget, metrics::Metrics& metrics);
  ~Worker() override;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds this worker's sockets. Call before start(). Addresses with port 0 are bound to a free
  // port; bound_addresses() tells which (the gateway binds worker 0 first and gives the resolved
  // ports to the others so they share them through SO_REUSEPORT).
  bool open(std::string* error);
  std::vector<Address> bound_addresses(session::Proto proto) const;

  void set_dtls(std::unique_ptr<dtls::ServerContext> context);
  // dtls.psk.lookup (worker_registry.cpp): the device registry, asked through an HTTP client on this
  // worker's io_context. Before start().
  void enable_psk_lookup(PskLookup::Settings settings);
  // Every worker of the gateway, by index (this one included), before start(): a DTLS record whose
  // Connection ID names another worker is posted to it (cid_path.cpp).
  void set_peers(std::vector<Worker*> peers);
  // Sessions restored from sessions.persist.file, claimed by their device's next record.
  void set_restored_pool(persist::RestoredPool* pool) { dtls_->set_restored_pool(pool); }
  // After stop(): the DTLS sessions exported for the persist file.
  std::vector<persist::Entry> take_exported();
  // This worker's route table, built on the calling thread (name resolution, TLS contexts, files:
  // never on the worker) and handed over with install_router(). Throws std::runtime_error.
  std::shared_ptr<upstream::Router> make_router(const std::vector<upstream::RouteSpec>& routes,
                                               const upstream::CoapClientSettings& coap);
  void install_router(std::shared_ptr<upstream::Router> router);  // before start(), or via post()
  // A router made for a reload that was refused: shut down and freed on this worker's thread.
  void discard_router(std::shared_ptr<upstream::Router> router);

  void start();
  void post(std::function<void()> fn);
  // Stop taking new sessions, send close_notify to every DTLS session, keep serving the ones in
  // flight until they finish. Safe from any thread.
  void begin_drain();
  std::size_t in_flight() const { return role_->in_flight(); }
  void stop();   // stops the loop and joins; sessions are closed with reason `shutdown`
  // The first half of stop(), without the join: the process asks every worker at once, so their
  // last stream flushes (up to 1 s) overlap.
  void request_stop();

  // Reload pieces, called through post() on the worker thread. apply_credentials swaps the PSK
  // store and client CA (null trust: keep the current one) and closes, with reason `revoked`, every
  // established session whose key or certificate no longer stands (DtlsTransport::apply_credentials).
  void apply_credentials(std::shared_ptr<const dtls::PskStore> store, std::shared_ptr<const dtls::TrustStore> trust);

  // Admin: runs on the worker thread, answers through `done`.
  void list_sessions(std::uint64_t after_id, std::size_t limit,
                     std::function<void(std::vector<admin::SessionInfo>)> done);

  // Downlink (device_links.hpp): use only on this worker's thread (post()).
  DeviceLinks& device_links() { return *links_; }
  // Called on this worker's thread for every CoAP message a device sends (the backend API's
  // device_heard); set before start().
  void set_device_heard(std::function<void(const session::Session&)> heard) { role_->set_heard(std::move(heard)); }

  int worker_index() const override { return settings_.index; }
  const session::Counts& counts() const { return table_->counts(); }
  // Last time the loop ran its housekeeping tick (steady clock, ms); the watchdog checks it.
  std::int64_t heartbeat_ms() const { return heartbeat_ms_.load(std::memory_order_relaxed); }

 private:
  struct Endpoint;

  void do_wait(std::size_t endpoint);
  void on_readable(std::size_t endpoint);
  void on_datagram(Endpoint& ep, std::uint8_t ep_index, const net::ReceivedDatagram& d, session::TimePoint now);
  void send_stateless_reset(Endpoint& ep, const net::ReceivedDatagram& d, std::uint16_t mid);
  void schedule_tick();
  void on_tick();
  void flush_metrics();

  void on_malformed(Endpoint& ep, const net::ReceivedDatagram& d, coap::ParseError error);
  void send_to(session::Session& s, std::span<const std::byte> datagram);
  void drop_session_traffic(session::Session& s);
  static ServerRoleSettings role_settings(const WorkerSettings& settings);

  // ServerRole::Host (and, for count_bad and draining, DtlsTransport::Host)
  void send_message(session::Session& s, std::span<const std::byte> message) override { send_to(s, message); }
  void flush() override;
  void count_bad(metrics::BadReason reason, std::uint64_t n = 1) override;
  bool draining() const override { return draining_.load(std::memory_order_relaxed); }
  void exchange_done(session::Session& s) override { close_if_drained(s); }
  session::TimePoint now() const override { return session::Clock::now(); }

  // DtlsTransport::Host and StreamTransport::Host (both hand whole CoAP messages to on_coap)
  void deliver(session::Session& s, std::span<const std::byte> message, session::TimePoint now) override;
  void send_datagram(std::uint8_t endpoint, const Address& peer, const Address& local,
                     std::span<const std::byte> datagram) override;
  void ping(session::Session& s) override;
  void identified(session::Session& s) override;
  // worker_downlink.cpp: this worker's DeviceLinks and the plain listeners its devices are found on.
  std::unique_ptr<DeviceLinks> make_links();
  std::vector<std::pair<std::uint8_t, std::uint16_t>> plain_endpoints() const;
  void close_if_drained(session::Session& s);
  void stop_after_stream_flush(session::TimePoint deadline);
  // A record whose RFC 9146 Connection ID names another worker: posted to it.
  bool hand_to_worker(int worker, std::uint8_t endpoint, const net::ReceivedDatagram& d) override;

  void on_session_event(session::Session& s, const session::EventInfo& e);

  WorkerSettings settings_;
  session::Budget& budget_;
  metrics::Metrics& metrics_;
  std::unique_ptr<boost::asio::io_context> io_;
  struct Timer;
  std::unique_ptr<Timer> tick_timer_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::unique_ptr<net::ReceiveBatch> receive_batch_;
  std::unique_ptr<net::SendBatch> send_batch_;
  std::unique_ptr<session::Table> table_;
  std::unique_ptr<DtlsTransport> dtls_;
  std::unique_ptr<StreamTransport> stream_;  // listen.coap_tcp
  std::vector<Worker*> peers_;  // every worker of the process, by index (hand_to_worker)
  // Records other workers handed to this one and not yet processed (bounded by max_handed_in).
  static constexpr std::size_t max_handed_in = 4096;
  std::atomic<std::size_t> handed_in_{0};
  std::thread thread_;
  bool stop_requested_ = false;  // request_stop() posted the stop (caller thread only)
  std::unique_ptr<std::vector<persist::Entry>> exported_;
  std::atomic<bool> draining_{false};
  std::atomic<std::int64_t> heartbeat_ms_{0};
  std::uint64_t handshakes_since_trim_ = 0;  // taken from dtls_ each tick
  session::TimePoint next_trim_{};

  // The server role of every session of this worker, on its exchange::Layer (routes, forwards,
  // caches); before links_, which uses the layer's client role.
  std::unique_ptr<ServerRole> role_;
  // Requests the backend sends to devices (Call-Home), through the role's layer's client role.
  std::unique_ptr<DeviceLinks> links_;
  log::RateLimited bad_log_;

  // Hot-path counters kept per worker and added to Prometheus on each tick.
  struct LocalCounters {
    std::uint64_t messages_out[4] = {};
    std::uint64_t reused[session::proto_count] = {};
  } local_, flushed_;
};

}  // namespace coapgw::server
