// coapgw::metrics — the process-wide Prometheus registry and every metric
// family of DESIGN.md "Metric names".
//
// One Metrics object is created at start-up and outlives the workers. All
// families and every child with a fixed label set (labels.hpp: one enum per
// label, bad message reasons included) are created in the constructor, so a
// scrape shows them at 0 from the first second and the data path only indexes
// an array of pre-resolved children (prometheus-cpp counters are atomic).
// Route-labelled children are resolved when a worker builds its routes
// (route()), and request counters per (method, code) once per worker: a family
// lookup takes the family lock and builds a label map, so it never happens
// per message. Session gauges are not stored by the workers: each worker
// registers a source that adds its table's counts, and serialize() sums them
// at scrape time, so the gauge always equals what the tables hold; only the
// combinations of session_series() are exported.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

#include <prometheus/metric_family.h>

#include "metrics/labels.hpp"
#include "metrics/registry_metrics.hpp"
#include "metrics/route_metrics.hpp"

namespace coapgw::metrics {

// One worker's contribution to coapgw_sessions / coapgw_sessions_idle.
struct SessionCounts {
  static constexpr std::size_t protos = count<Proto>, types = count<SessionType>,
                               states = count<SessionState>;
  std::array<std::array<std::array<std::int64_t, states>, types>, protos> sessions{};
  std::array<std::int64_t, protos> idle{};

  std::int64_t& at(Proto p, SessionType t, SessionState s) {
    return sessions[static_cast<std::size_t>(p)][static_cast<std::size_t>(t)]
                   [static_cast<std::size_t>(s)];
  }
  std::int64_t& idle_at(Proto p) { return idle[static_cast<std::size_t>(p)]; }
};

class Metrics {
 public:
  explicit Metrics(std::string version);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  prometheus::Registry& registry();
  std::shared_ptr<prometheus::Registry> registry_ptr();

  // Fixed label sets: pre-resolved, lock-free to call.
  prometheus::Counter& messages(bool in, MsgType t);
  prometheus::Counter& sessions_created(Proto p);
  prometheus::Counter& sessions_reused(Proto p);
  prometheus::Counter& sessions_closed(Proto p, CloseReason r);
  prometheus::Counter& dtls_handshakes(HandshakeResult r);
  prometheus::Counter& hello_verify_requests();
  prometheus::Counter& dtls_address_changes();  // RFC 9146: a session's address moved with its CID
  prometheus::Counter& dtls_sessions_parked();   // a CID session's address became another peer's
  prometheus::Counter& retransmissions();
  prometheus::Counter& duplicates();
  prometheus::Counter& config_reloads(bool ok);  // result="ok"|"failed"
  prometheus::Counter& admin_rejected(AdminReject r);

  prometheus::Counter& bad_messages(BadReason r);

  // Backend API and downlink (lib/api). The API counts requests and keeps the
  // queue gauge; the downlink implementation keeps observations and counts
  // notifications, because it sees observations end with their sessions.
  prometheus::Counter& downlink_requests(DownlinkOutcome o);
  prometheus::Gauge& downlink_queued();
  prometheus::Gauge& observations();
  prometheus::Counter& notifications();
  // Group requests (POST /v1/groups/requests, multicast): outcome sent|rejected; responses
  // collected, or dropped (over api.groups.max_responses, or a second one from one responder).
  prometheus::Counter& group_requests(bool sent);
  prometheus::Counter& group_responses(bool collected);
  // Observe relayed through coap:// routes: relays held by all workers; notifications relayed to
  // devices, or dropped (larger than one message).
  prometheus::Gauge& observe_relays();
  prometheus::Counter& relayed_notifications(bool relayed);
  prometheus::Counter& observe_relays_refused(bool per_session);  // a bound reached: not relayed
  prometheus::Counter& api_rejected(ApiReject r);

  // Device registry and rate limits (issue 16, registry_metrics.cpp).
  prometheus::Counter& psk_lookups(PskLookupResult r);
  prometheus::Counter& psk_cache_evictions();
  prometheus::Counter& rate_limited(Proto p);

  // Open label sets: each call takes the family lock and builds a label map.
  // Call when the label value first appears, then keep the reference.
  prometheus::Counter& requests(std::string_view method, std::string_view code);  // code "2.05"

  // RFC 8323 stream transports (server/stream_transport.cpp), by proto (tcp|tls|ws|wss):
  // coapgw_stream_connections_total{proto,event} (accepted, refused_over_cap, slow_reader,
  // flush_timeout), coapgw_stream_closed_total{proto,reason} (why a connection ended) and
  // coapgw_stream_refusals_total{proto,reason} (what a connection refused and survived).
  // Takes the family lock: resolve when a worker builds its listeners, keep the reference.
  enum class StreamFamily : std::uint8_t { connections, closed, refusals };
  prometheus::Counter& stream(StreamFamily family, std::string_view proto, std::string_view value);

  // The children of one route (route_metrics.hpp). Takes the family locks:
  // call when routes are built, not per request.
  RouteMetrics route(std::string_view route);

  // Registers a source called at each scrape (on the scraping thread); it
  // must add its counts without blocking on a worker. Register at start-up.
  void add_session_source(std::function<void(SessionCounts&)> add_counts);
  // Drops every source (their owners are going away); the gauges then read 0.
  void clear_session_sources();

  // Sums the session sources into the session gauges, then renders every
  // family in the Prometheus text format (version 0.0.4).
  std::string serialize();

  // Upper bounds of coapgw_upstream_duration_seconds, in seconds.
  static const std::vector<double>& upstream_buckets();

 private:
  void update_session_gauges();
  void add_downlink_families(prometheus::Registry& reg);
  void add_registry_families(prometheus::Registry& reg);
  std::array<prometheus::Counter*, count<PskLookupResult>> psk_lookups_{};
  prometheus::Counter* psk_cache_evictions_ = nullptr;
  std::array<prometheus::Counter*, count<Proto>> rate_limited_{};

  std::shared_ptr<prometheus::Registry> registry_;

  prometheus::Family<prometheus::Gauge>* sessions_family_;
  prometheus::Family<prometheus::Gauge>* sessions_idle_family_;
  prometheus::Family<prometheus::Counter>* bad_messages_family_;
  prometheus::Family<prometheus::Counter>* requests_family_;
  prometheus::Family<prometheus::Counter>* upstream_requests_family_;
  prometheus::Family<prometheus::Histogram>* upstream_duration_family_;
  std::array<prometheus::Family<prometheus::Counter>*, 3> stream_families_{};  // by StreamFamily

  std::array<std::array<prometheus::Counter*, count<MsgType>>, 2> messages_{};
  std::array<prometheus::Counter*, count<Proto>> created_{};
  std::array<prometheus::Counter*, count<Proto>> reused_{};
  std::array<std::array<prometheus::Counter*, count<CloseReason>>, count<Proto>> closed_{};
  std::array<prometheus::Counter*, count<HandshakeResult>> handshakes_{};
  std::array<prometheus::Counter*, count<BadReason>> bad_messages_{};
  prometheus::Counter* hello_verify_ = nullptr;
  prometheus::Counter* address_changes_ = nullptr;
  prometheus::Counter* sessions_parked_ = nullptr;
  prometheus::Counter* retransmissions_ = nullptr;
  prometheus::Counter* duplicates_ = nullptr;
  std::array<prometheus::Counter*, 2> reloads_{};  // [0]=failed, [1]=ok
  std::array<prometheus::Counter*, count<AdminReject>> admin_rejected_{};
  std::array<prometheus::Counter*, count<DownlinkOutcome>> downlink_requests_{};
  prometheus::Gauge* downlink_queued_ = nullptr;
  prometheus::Gauge* observations_ = nullptr;
  prometheus::Counter* notifications_ = nullptr;
  std::array<prometheus::Counter*, 2> group_requests_{};   // [sent]
  std::array<prometheus::Counter*, 2> group_responses_{};  // [collected]
  prometheus::Gauge* observe_relays_ = nullptr;
  std::array<prometheus::Counter*, 2> relayed_notifications_{};  // [relayed]
  std::array<prometheus::Counter*, 2> observe_relays_refused_{};  // [per_session]
  std::array<prometheus::Counter*, count<ApiReject>> api_rejected_{};

  std::vector<prometheus::Gauge*> session_gauges_;  // one per session_series() entry
  std::array<prometheus::Gauge*, SessionCounts::protos> idle_gauges_{};

  // Guards the source list and the set-then-collect step of serialize(), so
  // two concurrent scrapes cannot interleave their gauge updates.
  std::mutex scrape_mutex_;
  // Open-label families as they render while they have no children yet.
  std::vector<prometheus::MetricFamily> empty_families_;
  std::vector<std::function<void(SessionCounts&)>> session_sources_;
};

}  // namespace coapgw::metrics
