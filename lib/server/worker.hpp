// coapgw::server::Worker — one shard of the gateway: an io_context run by one thread, its own
// SO_REUSEPORT socket per listen address, its own session table, duplicate cache, DTLS context,
// route table and timers. The kernel hashes each peer's 4-tuple to one socket, so a session lives on
// exactly one worker and nothing on the data path locks. Other threads talk to a worker only by
// post()ing work to it.
//
// The CoAP message layer is lib/exchange (one exchange::Layer per worker, for every session: duplicate
// detection, retransmission of our CONs, ACK/RST matching, the RFC answers to unexpected messages);
// the worker is its Sink. message_layer.cpp has the server-role glue on top of it (piggybacked,
// NON and separate answers, critical options, request-target checks, forwarding). The DTLS
// transport (handshakes, engines, restored sessions, Connection IDs, revocation) is a DtlsTransport
// that hands this worker whole CoAP messages; worker.cpp has the loop, sockets, timers and the
// plain UDP dispatch.
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
#include "coap/block.hpp"
#include "coap/message.hpp"
#include "upstream/router.hpp"  // Router::Match; forward-declares asio only
#include "server/blockwise_cache.hpp"
#include "common/address.hpp"
#include "common/log.hpp"
#include "server/dtls_transport.hpp"
#include "metrics/route_metrics.hpp"
#include "exchange/layer.hpp"
#include "session/table.hpp"

namespace boost::asio {
class io_context;
}
namespace prometheus {
class Counter;
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
class ObserveRelays;

struct WorkerSettings {
  int index = 0;
  std::vector<Address> coap_listen;
  std::vector<Address> coaps_listen;
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
  bool persist = false;   // sessions.persist.file set: export DTLS sessions at stop instead of close_notify
};

class Worker : public session::Context, private exchange::Sink, private DtlsTransport::Host {
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
  std::size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  void stop();   // stops the loop and joins; sessions are closed with reason `shutdown`

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
  void set_device_heard(std::function<void(const session::Session&)> heard) { heard_ = std::move(heard); }

  int worker_index() const override { return settings_.index; }
  const session::Counts& counts() const { return table_->counts(); }
  // Last time the loop ran its housekeeping tick (steady clock, ms); the watchdog checks it.
  std::int64_t heartbeat_ms() const { return heartbeat_ms_.load(std::memory_order_relaxed); }

 private:
  struct Endpoint;
  struct PendingForward;

  void do_wait(std::size_t endpoint);
  void on_readable(std::size_t endpoint);
  void on_datagram(Endpoint& ep, std::uint8_t ep_index, const net::ReceivedDatagram& d);
  void send_stateless_reset(Endpoint& ep, const net::ReceivedDatagram& d, std::uint16_t mid);
  void schedule_tick();
  void on_tick();
  void flush_metrics();

  // message_layer.cpp
  struct Reply;
  void on_coap(session::Session& s, const coap::MessageView& m, session::TimePoint now);
  void on_malformed(Endpoint& ep, const net::ReceivedDatagram& d, coap::ParseError error);
  void on_malformed_in_session(session::Session& s, std::span<const std::byte> datagram, coap::ParseError error);
  // exchange::Sink: the layer's output and what it reports.
  exchange::SendResult send(session::Session& s, std::span<const std::byte> message) override;
  exchange::ExchangeCache* dedup_cache(session::Session& s) override { return &cache_for(s); }
  void on_request(session::Session& s, const coap::MessageView& m, session::TimePoint now) override;
  void on_duplicate(session::Session&) override { ++local_.duplicates; }
  void on_con_ended(session::Session& s, std::uint16_t mid, exchange::Ending how) override;
  void on_anomaly(session::Session&, exchange::Anomaly what) override;
  // Sends the answer for `r`: piggybacked, NON, or separate CON; bodies larger than one block go
  // out block-wise (Block2) and the rest is kept for the follow-up block requests.
  void reply(session::Session& s, const Reply& r, std::uint8_t code, std::optional<std::uint16_t> content_format,
             std::span<const std::byte> body, session::TimePoint now, std::optional<std::uint32_t> max_age = std::nullopt,
             std::optional<std::uint32_t> size1 = std::nullopt,
             std::span<const std::pair<std::uint16_t, std::vector<std::byte>>> relayed = {});
  void send_to(session::Session& s, std::span<const std::byte> datagram);
  // Block1 (RFC 7959 2.5): true when the request is complete (body in `body`), false when it was
  // answered here (2.31 Continue, 4.08, 4.13, 4.00, 5.03).
  bool reassemble(session::Session& s, const coap::MessageView& m, Reply& r, std::vector<std::byte>& body,
                  session::TimePoint now);
  bool serve_cached_block(session::Session& s, const coap::MessageView& m, const Reply& r, session::TimePoint now);
  // blockwise_layer.cpp: the block of `body` that `r` asks for, in block size 16 << szx; a fresh
  // body with more blocks is kept for the follow-ups (replacing what was kept for the request).
  struct Block2Window {
    std::optional<coap::BlockValue> block2;  // unset: the body goes whole
    std::span<const std::byte> payload;
    bool past_end = false;                   // asked for a block past the end (4.02)
    std::vector<std::byte> etag;             // to add: the representation's own when the upstream gave none
  };
  Block2Window block2_window(session::Session& s, const Reply& r, std::uint8_t code,
                             std::optional<std::uint16_t> content_format, std::optional<std::uint32_t> max_age,
                             std::span<const std::byte> body,
                             std::span<const std::pair<std::uint16_t, std::vector<std::byte>>> relayed,
                             std::uint8_t szx, session::TimePoint now);
  static std::string answer_key_of(const session::Session& s, const coap::MessageView& m, std::string_view path,
                                   std::string_view query);
  // `match` is the route chosen for `path` by the current router.
  void start_forward(session::Session& s, const coap::MessageView& m, const upstream::Router::Match& match,
                     std::string path, std::string query, Reply r, std::vector<std::byte> body,
                     session::TimePoint now);
  void on_forward_done(std::uint64_t pending_id, upstream::ForwardResponse response);
  void separate_due(session::TimePoint now);
  void expire_blockwise(session::TimePoint now);
  void drop_session_traffic(session::Session& s);
  void count_request(std::uint8_t method, std::uint8_t code);
  void count_bad(metrics::BadReason reason, std::uint64_t n = 1) override;

  // DtlsTransport::Host
  void deliver(session::Session& s, std::span<const std::byte> message, session::TimePoint now) override;
  void send_datagram(std::uint8_t endpoint, const Address& peer, const Address& local,
                     std::span<const std::byte> datagram) override;
  void ping(session::Session& s) override;
  bool draining() const override { return draining_.load(std::memory_order_relaxed); }
  void identified(session::Session& s) override;
  // worker_downlink.cpp: this worker's DeviceLinks and the plain listeners its devices are found on.
  std::unique_ptr<DeviceLinks> make_links();
  std::vector<std::pair<std::uint8_t, std::uint16_t>> plain_endpoints() const;
  void close_if_drained(session::Session& s);
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
  // Duplicate detection, one cache for plain CoAP and one for DTLS sessions: a flood of (possibly
  // spoofed) plain datagrams can push plain entries out early, never those of authenticated
  // devices, whose retransmitted requests must not run twice.
  exchange::ExchangeCache cache_plain_;
  exchange::ExchangeCache cache_secure_;
  exchange::ExchangeCache& cache_for(const session::Session& s) {
    return s.proto() == session::Proto::udp ? cache_plain_ : cache_secure_;
  }
  std::unique_ptr<DtlsTransport> dtls_;
  std::vector<Worker*> peers_;  // every worker of the process, by index (hand_to_worker)
  // Records other workers handed to this one and not yet processed (bounded by max_handed_in).
  static constexpr std::size_t max_handed_in = 4096;
  std::atomic<std::size_t> handed_in_{0};
  std::shared_ptr<upstream::Router> router_;
  // The metric children of router_'s routes, by Router::Match::index; replaced with router_.
  std::vector<metrics::RouteMetrics> route_metrics_;
  std::vector<std::string> route_prefixes_;
  std::vector<std::shared_ptr<upstream::Router>> old_routers_;  // replaced by a reload, still answering
  std::thread thread_;
  std::unique_ptr<std::vector<persist::Entry>> exported_;
  std::atomic<bool> draining_{false};
  std::atomic<std::size_t> in_flight_{0};
  std::atomic<std::int64_t> heartbeat_ms_{0};
  std::uint64_t handshakes_since_trim_ = 0;  // taken from dtls_ each tick
  session::TimePoint next_trim_{};

  // The message layer of every session of this worker; its CONs awaiting an ACK hold a session
  // reference each.
  std::unique_ptr<exchange::Layer> layer_;
  // Requests waiting for an upstream answer; each holds a session reference.
  std::unordered_map<std::uint64_t, std::unique_ptr<PendingForward>> pending_;
  // Requests the backend sends to devices (Call-Home), through layer_'s client role.
  std::unique_ptr<DeviceLinks> links_;
  std::unique_ptr<ObserveRelays> relays_;  // Observe through coap:// routes (observe_relays.hpp)
  std::function<void(const session::Session&)> heard_;
  std::uint64_t next_pending_id_ = 1;
  log::RateLimited bad_log_;
  // Block-wise state, bounded per worker and per session: Block1 uploads being reassembled, and
  // Block2 answers kept for the follow-up block requests (see blockwise_cache.hpp). Plain CoAP and
  // DTLS sessions each have their own, with the full bounds: many (possibly spoofed) plain
  // sources filling theirs cannot refuse uploads or answers to authenticated devices.
  BlockwiseCache blockwise_plain_;
  BlockwiseCache blockwise_secure_;
  BlockwiseCache& blockwise_for(const session::Session& s) {
    return s.proto() == session::Proto::udp ? blockwise_plain_ : blockwise_secure_;
  }

  // Hot-path counters kept per worker and added to Prometheus on each tick.
  struct LocalCounters {
    std::uint64_t messages_in[4] = {};
    std::uint64_t messages_out[4] = {};
    std::uint64_t duplicates = 0;
    std::uint64_t retransmissions = 0;
    std::uint64_t reused[session::proto_count] = {};
  } local_, flushed_;
  // coapgw_requests_total children by (method << 8 | code), resolved when a pair first appears.
  std::unordered_map<std::uint16_t, prometheus::Counter*> request_counters_;
  std::array<std::byte, 65536> scratch_{};
};

}  // namespace coapgw::server
