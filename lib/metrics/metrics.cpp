// Registry construction and scrape-time rendering; see metrics.hpp.
#include "metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>
#include <utility>

namespace coapgw::metrics {

namespace {

std::string s(std::string_view v) { return std::string(v); }

constexpr const char* requests_help = "Device requests answered, by method and response code";
constexpr const char* bad_messages_help = "Datagrams dropped or rejected as malformed, by reason";
constexpr const char* upstream_requests_help = "Requests forwarded to upstreams, by route and outcome";
constexpr const char* upstream_duration_help = "Time from forwarding a request to the upstream answer";

}  // namespace

const std::vector<double>& Metrics::upstream_buckets() {
  // 1 ms .. 30 s, roughly 1-2.5-5 per decade: fine where backends usually
  // answer, coarse up to the longest route timeout anyone sets.
  static const std::vector<double> buckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                           0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};
  return buckets;
}

Metrics::Metrics(std::string version)
    : registry_(std::make_shared<prometheus::Registry>()) {
  auto& reg = *registry_;

  sessions_family_ = &prometheus::BuildGauge()
                          .Name("coapgw_sessions")
                          .Help("Sessions in the session tables by protocol, type and state")
                          .Register(reg);
  sessions_idle_family_ = &prometheus::BuildGauge()
                               .Name("coapgw_sessions_idle")
                               .Help("Unreferenced server sessions waiting in the idle pool")
                               .Register(reg);
  auto& created = prometheus::BuildCounter()
                      .Name("coapgw_sessions_created_total")
                      .Help("Sessions created")
                      .Register(reg);
  auto& reused = prometheus::BuildCounter()
                     .Name("coapgw_sessions_reused_total")
                     .Help("Idle sessions resumed by their peer")
                     .Register(reg);
  auto& closed = prometheus::BuildCounter()
                     .Name("coapgw_sessions_closed_total")
                     .Help("Sessions closed, by reason")
                     .Register(reg);
  auto& handshakes = prometheus::BuildCounter()
                         .Name("coapgw_dtls_handshakes_total")
                         .Help("DTLS handshakes finished, by result")
                         .Register(reg);
  auto& hello_verify = prometheus::BuildCounter()
                           .Name("coapgw_dtls_hello_verify_requests_total")
                           .Help("DTLS HelloVerifyRequests sent (stateless cookie exchange)")
                           .Register(reg);
  auto& address_changes = prometheus::BuildCounter()
                              .Name("coapgw_dtls_address_changes_total")
                              .Help("DTLS sessions whose peer address moved with their Connection ID (RFC 9146)")
                              .Register(reg);
  auto& sessions_parked = prometheus::BuildCounter()
                              .Name("coapgw_dtls_sessions_parked_total")
                              .Help("DTLS sessions with a Connection ID kept aside because another peer took their address")
                              .Register(reg);
  auto& messages = prometheus::BuildCounter()
                       .Name("coapgw_messages_total")
                       .Help("CoAP messages received and sent, by direction and type")
                       .Register(reg);
  requests_family_ = &prometheus::BuildCounter()
                          .Name("coapgw_requests_total")
                          .Help(requests_help)
                          .Register(reg);
  auto& retransmissions = prometheus::BuildCounter()
                              .Name("coapgw_retransmissions_total")
                              .Help("Confirmable messages retransmitted")
                              .Register(reg);
  auto& duplicates = prometheus::BuildCounter()
                         .Name("coapgw_duplicates_total")
                         .Help("Duplicate messages received and deduplicated")
                         .Register(reg);
  bad_messages_family_ = &prometheus::BuildCounter()
                              .Name("coapgw_bad_messages_total")
                          .Help(bad_messages_help)
                              .Register(reg);
  upstream_requests_family_ = &prometheus::BuildCounter()
                                   .Name("coapgw_upstream_requests_total")
                          .Help(upstream_requests_help)
                                   .Register(reg);
  upstream_duration_family_ = &prometheus::BuildHistogram()
                                   .Name("coapgw_upstream_duration_seconds")
                          .Help(upstream_duration_help)
                                   .Register(reg);
  auto& reloads = prometheus::BuildCounter()
                      .Name("coapgw_config_reloads_total")
                      .Help("Configuration reloads, by result")
                      .Register(reg);
  auto& build_info = prometheus::BuildGauge()
                         .Name("coapgw_build_info")
                         .Help("Build information; the value is always 1")
                         .Register(reg);
  auto& admin_rejected = prometheus::BuildCounter()
                             .Name("coapgw_admin_rejected_total")
                             .Help("Admin HTTP clients turned away at a bound, by reason")
                             .Register(reg);

  for (std::size_t p = 0; p < count<Proto>; ++p) {
    const auto proto = s(name(static_cast<Proto>(p)));
    created_[p] = &created.Add({{"proto", proto}});
    reused_[p] = &reused.Add({{"proto", proto}});
    for (std::size_t r = 0; r < count<CloseReason>; ++r)
      closed_[p][r] = &closed.Add({{"proto", proto}, {"reason", s(name(static_cast<CloseReason>(r)))}});
    idle_gauges_[p] = &sessions_idle_family_->Add({{"proto", proto}});
  }
  for (const auto& series : session_series())
    session_gauges_.push_back(&sessions_family_->Add(
        {{"proto", s(name(series.proto))}, {"type", s(name(series.type))}, {"state", s(name(series.state))}}));
  for (std::size_t d = 0; d < 2; ++d)
    for (std::size_t t = 0; t < count<MsgType>; ++t)
      messages_[d][t] =
          &messages.Add({{"direction", d == 1 ? "in" : "out"}, {"type", s(name(static_cast<MsgType>(t)))}});
  for (std::size_t r = 0; r < count<HandshakeResult>; ++r)
    handshakes_[r] = &handshakes.Add({{"result", s(name(static_cast<HandshakeResult>(r)))}});
  for (std::size_t r = 0; r < count<BadReason>; ++r)
    bad_messages_[r] = &bad_messages_family_->Add({{"reason", s(name(static_cast<BadReason>(r)))}});
  hello_verify_ = &hello_verify.Add({});
  address_changes_ = &address_changes.Add({});
  sessions_parked_ = &sessions_parked.Add({});
  retransmissions_ = &retransmissions.Add({});
  duplicates_ = &duplicates.Add({});
  reloads_[0] = &reloads.Add({{"result", "failed"}});
  reloads_[1] = &reloads.Add({{"result", "ok"}});
  for (std::size_t r = 0; r < count<AdminReject>; ++r)
    admin_rejected_[r] = &admin_rejected.Add({{"reason", s(name(static_cast<AdminReject>(r)))}});
  build_info.Add({{"version", std::move(version)}}).Set(1);
  add_downlink_families(reg);
  add_registry_families(reg);
  stream_families_ = {
      &prometheus::BuildCounter().Name("coapgw_stream_connections_total")
           .Help("CoAP over TCP/TLS/WebSocket connections accepted or cut by the listener, by event").Register(reg),
      &prometheus::BuildCounter().Name("coapgw_stream_closed_total")
           .Help("CoAP over TCP/TLS/WebSocket connections ended, by reason").Register(reg),
      &prometheus::BuildCounter().Name("coapgw_stream_refusals_total")
           .Help("Messages a CoAP over TCP/TLS/WebSocket connection refused and survived, by reason").Register(reg)};

  // prometheus-cpp leaves childless families out of Collect(); these have
  // children only once a request was answered or a route was built, so
  // serialize() renders them empty (HELP and TYPE) until then and every
  // family is visible from the first scrape.
  using prometheus::MetricType;
  empty_families_ = {
      {requests_family_->GetName(), requests_help, MetricType::Counter, {}},
      {upstream_requests_family_->GetName(), upstream_requests_help, MetricType::Counter, {}},
      {upstream_duration_family_->GetName(), upstream_duration_help, MetricType::Histogram, {}},
  };
}

Metrics::~Metrics() = default;

prometheus::Registry& Metrics::registry() { return *registry_; }
std::shared_ptr<prometheus::Registry> Metrics::registry_ptr() { return registry_; }

prometheus::Counter& Metrics::messages(bool in, MsgType t) {
  return *messages_[in ? 1 : 0][static_cast<std::size_t>(t)];
}
prometheus::Counter& Metrics::sessions_created(Proto p) {
  return *created_[static_cast<std::size_t>(p)];
}
prometheus::Counter& Metrics::sessions_reused(Proto p) {
  return *reused_[static_cast<std::size_t>(p)];
}
prometheus::Counter& Metrics::sessions_closed(Proto p, CloseReason r) {
  return *closed_[static_cast<std::size_t>(p)][static_cast<std::size_t>(r)];
}
prometheus::Counter& Metrics::dtls_handshakes(HandshakeResult r) {
  return *handshakes_[static_cast<std::size_t>(r)];
}
prometheus::Counter& Metrics::hello_verify_requests() { return *hello_verify_; }
prometheus::Counter& Metrics::dtls_address_changes() { return *address_changes_; }
prometheus::Counter& Metrics::dtls_sessions_parked() { return *sessions_parked_; }
prometheus::Counter& Metrics::retransmissions() { return *retransmissions_; }
prometheus::Counter& Metrics::duplicates() { return *duplicates_; }
prometheus::Counter& Metrics::config_reloads(bool ok) { return *reloads_[ok ? 1 : 0]; }
prometheus::Counter& Metrics::admin_rejected(AdminReject r) {
  return *admin_rejected_[static_cast<std::size_t>(r)];
}

prometheus::Counter& Metrics::bad_messages(BadReason r) { return *bad_messages_[index(r)]; }

void Metrics::add_downlink_families(prometheus::Registry& reg) {
  // One child per enumerator of E, labelled `label`.
  const auto by_enum = [&reg]<typename E>(const char* family, const char* help, const char* label,
                                          std::array<prometheus::Counter*, count<E>>& out, E) {
    auto& f = prometheus::BuildCounter().Name(family).Help(help).Register(reg);
    for (std::size_t i = 0; i < count<E>; ++i) out[i] = &f.Add({{label, s(name(static_cast<E>(i)))}});
  };
  by_enum("coapgw_downlink_requests_total", "Backend requests to devices, by outcome", "outcome",
          downlink_requests_, DownlinkOutcome{});
  by_enum("coapgw_api_rejected_total", "Backend API clients turned away, by reason", "reason", api_rejected_,
          ApiReject{});
  downlink_queued_ = &prometheus::BuildGauge()
                          .Name("coapgw_downlink_queued")
                          .Help("Backend requests queued for devices that are not reachable now")
                          .Register(reg)
                          .Add({});
  observations_ = &prometheus::BuildGauge()
                       .Name("coapgw_observations")
                       .Help("Observations of device resources held for backends")
                       .Register(reg)
                       .Add({});
  notifications_ = &prometheus::BuildCounter()
                        .Name("coapgw_notifications_total")
                        .Help("Notifications from observed devices relayed to backends")
                        .Register(reg)
                        .Add({});
  auto& groups = prometheus::BuildCounter()
                     .Name("coapgw_group_requests_total")
                     .Help("Multicast group requests from backends, by outcome")
                     .Register(reg);
  group_requests_ = {&groups.Add({{"outcome", "rejected"}}), &groups.Add({{"outcome", "sent"}})};
  auto& responses = prometheus::BuildCounter()
                        .Name("coapgw_group_responses_total")
                        .Help("Unicast responses to group requests: collected, or dropped over the bound")
                        .Register(reg);
  group_responses_ = {&responses.Add({{"result", "dropped"}}), &responses.Add({{"result", "collected"}})};
  observe_relays_ = &prometheus::BuildGauge()
                         .Name("coapgw_observe_relays")
                         .Help("Device observations relayed to coap:// upstreams")
                         .Register(reg)
                         .Add({});
  auto& relayed = prometheus::BuildCounter()
                      .Name("coapgw_relayed_notifications_total")
                      .Help("Upstream notifications relayed to observing devices, or dropped")
                      .Register(reg);
  relayed_notifications_ = {&relayed.Add({{"result", "dropped"}}), &relayed.Add({{"result", "relayed"}})};
  auto& refused = prometheus::BuildCounter()
                      .Name("coapgw_observe_relays_refused_total")
                      .Help("Observe registrations forwarded without relaying: a worker or session bound reached")
                      .Register(reg);
  observe_relays_refused_ = {&refused.Add({{"bound", "worker"}}), &refused.Add({{"bound", "session"}})};
}

prometheus::Counter& Metrics::downlink_requests(DownlinkOutcome o) { return *downlink_requests_[index(o)]; }
prometheus::Gauge& Metrics::downlink_queued() { return *downlink_queued_; }
prometheus::Gauge& Metrics::observations() { return *observations_; }
prometheus::Counter& Metrics::notifications() { return *notifications_; }
prometheus::Counter& Metrics::group_requests(bool sent) { return *group_requests_[sent ? 1 : 0]; }
prometheus::Counter& Metrics::group_responses(bool collected) { return *group_responses_[collected ? 1 : 0]; }
prometheus::Gauge& Metrics::observe_relays() { return *observe_relays_; }
prometheus::Counter& Metrics::relayed_notifications(bool relayed) { return *relayed_notifications_[relayed ? 1 : 0]; }
prometheus::Counter& Metrics::observe_relays_refused(bool per_session) {
  return *observe_relays_refused_[per_session ? 1 : 0];
}
prometheus::Counter& Metrics::api_rejected(ApiReject r) { return *api_rejected_[index(r)]; }

prometheus::Counter& Metrics::requests(std::string_view method, std::string_view code) {
  return requests_family_->Add({{"method", s(method)}, {"code", s(code)}});
}

prometheus::Counter& Metrics::stream(StreamFamily family, std::string_view proto, std::string_view value) {
  const char* label = family == StreamFamily::connections ? "event" : "reason";
  return stream_families_[static_cast<std::size_t>(family)]->Add({{"proto", s(proto)}, {label, s(value)}});
}

RouteMetrics Metrics::route(std::string_view route) {
  RouteMetrics m;
  for (std::size_t o = 0; o < count<UpstreamOutcome>; ++o)
    m.requests[o] = &upstream_requests_family_->Add(
        {{"route", s(route)}, {"outcome", s(name(static_cast<UpstreamOutcome>(o)))}});
  m.duration = &upstream_duration_family_->Add({{"route", s(route)}}, upstream_buckets());
  return m;
}

void RouteMetrics::record(UpstreamOutcome outcome, double seconds) const {
  requests[index(outcome)]->Increment();
  duration->Observe(seconds);
}

void Metrics::add_session_source(std::function<void(SessionCounts&)> add_counts) {
  std::lock_guard lock(scrape_mutex_);
  session_sources_.push_back(std::move(add_counts));
}

void Metrics::clear_session_sources() {
  std::lock_guard lock(scrape_mutex_);
  session_sources_.clear();
}

void Metrics::update_session_gauges() {
  SessionCounts total;
  for (const auto& source : session_sources_) source(total);
  const auto series = session_series();
  for (std::size_t i = 0; i < series.size(); ++i)
    session_gauges_[i]->Set(static_cast<double>(total.at(series[i].proto, series[i].type, series[i].state)));
  for (std::size_t p = 0; p < SessionCounts::protos; ++p)
    idle_gauges_[p]->Set(static_cast<double>(total.idle[p]));
}

std::string Metrics::serialize() {
  std::vector<prometheus::MetricFamily> families;
  {
    std::lock_guard lock(scrape_mutex_);
    update_session_gauges();
    families = registry_->Collect();
  }
  for (const auto& empty : empty_families_) {
    const bool present = std::any_of(families.begin(), families.end(),
                                     [&](const auto& f) { return f.name == empty.name; });
    if (!present) families.push_back(empty);
  }
  std::ostringstream out;
  prometheus::TextSerializer{}.Serialize(out, families);
  return out.str();
}

}  // namespace coapgw::metrics
