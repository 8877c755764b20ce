// Tests for coapgw::metrics: every family present with the right type, fixed
// children at 0 from start-up (every bad message reason, every outcome of a
// built route), the session gauges limited to the combinations a session can
// be in, label names that round-trip, session sources summed at scrape time,
// and the rendered text accepted by a real Prometheus text parser.
#include "metrics/metrics.hpp"

#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <unistd.h>

namespace coapgw::metrics {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

// Value of the sample whose "name{labels}" part equals `series` exactly.
std::optional<double> sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l.size() > series.size() && l.compare(0, series.size(), series) == 0 &&
        l[series.size()] == ' ')
      return std::stod(l.substr(series.size() + 1));
  }
  return std::nullopt;
}

TEST(Metrics, EveryFamilyHasItsTypeLine) {
  Metrics m("1.2.3");
  const std::string text = m.serialize();
  const std::map<std::string, std::string> families{
      {"coapgw_sessions", "gauge"},
      {"coapgw_sessions_idle", "gauge"},
      {"coapgw_sessions_created_total", "counter"},
      {"coapgw_sessions_reused_total", "counter"},
      {"coapgw_sessions_closed_total", "counter"},
      {"coapgw_dtls_handshakes_total", "counter"},
      {"coapgw_dtls_hello_verify_requests_total", "counter"},
      {"coapgw_messages_total", "counter"},
      {"coapgw_requests_total", "counter"},
      {"coapgw_retransmissions_total", "counter"},
      {"coapgw_duplicates_total", "counter"},
      {"coapgw_bad_messages_total", "counter"},
      {"coapgw_upstream_requests_total", "counter"},
      {"coapgw_upstream_duration_seconds", "histogram"},
      {"coapgw_config_reloads_total", "counter"},
      {"coapgw_build_info", "gauge"},
      {"coapgw_admin_rejected_total", "counter"},
  };
  for (const auto& [family, type] : families)
    EXPECT_TRUE(has_line(text, "# TYPE " + family + " " + type)) << family;
  EXPECT_EQ(sample(text, "coapgw_build_info{version=\"1.2.3\"}"), 1.0);
}

TEST(Metrics, FixedLabelCountersExistAtZero) {
  Metrics m("t");
  const std::string text = m.serialize();
  for (const char* proto : {"udp", "dtls"}) {
    const std::string p = proto;
    EXPECT_EQ(sample(text, "coapgw_sessions_created_total{proto=\"" + p + "\"}"), 0.0);
    EXPECT_EQ(sample(text, "coapgw_sessions_reused_total{proto=\"" + p + "\"}"), 0.0);
    EXPECT_EQ(sample(text, "coapgw_sessions_idle{proto=\"" + p + "\"}"), 0.0);
    for (const char* reason : {"idle_timeout", "evicted", "peer_closed", "tls_failed",
                               "handshake_timeout", "disconnected", "shutdown"})
      EXPECT_EQ(sample(text, "coapgw_sessions_closed_total{proto=\"" + p + "\",reason=\"" +
                                 reason + "\"}"),
                0.0)
          << p << " " << reason;
  }
  for (const auto& series : session_series())
    EXPECT_EQ(sample(text, "coapgw_sessions{proto=\"" + std::string(name(series.proto)) + "\",state=\"" +
                               std::string(name(series.state)) + "\",type=\"" +
                               std::string(name(series.type)) + "\"}"),
              0.0)
        << name(series.proto) << " " << name(series.type) << " " << name(series.state);
  for (std::size_t r = 0; r < count<BadReason>; ++r)
    EXPECT_EQ(sample(text, "coapgw_bad_messages_total{reason=\"" +
                               std::string(name(static_cast<BadReason>(r))) + "\"}"),
              0.0)
        << name(static_cast<BadReason>(r));
  for (const char* dir : {"in", "out"})
    for (const char* type : {"con", "non", "ack", "rst"})
      EXPECT_EQ(sample(text, std::string("coapgw_messages_total{direction=\"") + dir +
                                 "\",type=\"" + type + "\"}"),
                0.0);
  for (const char* r : {"ok", "failed", "timeout", "rejected", "backoff", "resumed"})
    EXPECT_EQ(sample(text, std::string("coapgw_dtls_handshakes_total{result=\"") + r + "\"}"),
              0.0);
  EXPECT_EQ(sample(text, "coapgw_config_reloads_total{result=\"ok\"}"), 0.0);
  EXPECT_EQ(sample(text, "coapgw_config_reloads_total{result=\"failed\"}"), 0.0);
  EXPECT_EQ(sample(text, "coapgw_dtls_hello_verify_requests_total"), 0.0);
  EXPECT_EQ(sample(text, "coapgw_retransmissions_total"), 0.0);
  EXPECT_EQ(sample(text, "coapgw_duplicates_total"), 0.0);
}

TEST(Metrics, IncrementsReachTheRightChild) {
  Metrics m("t");
  m.messages(true, MsgType::con).Increment();
  m.messages(false, MsgType::ack).Increment(2);
  m.sessions_closed(Proto::dtls, CloseReason::evicted).Increment();
  m.dtls_handshakes(HandshakeResult::timeout).Increment();
  m.config_reloads(false).Increment();
  m.bad_messages(BadReason::truncated_option).Increment();
  m.requests("GET", "2.05").Increment(3);
  const RouteMetrics api = m.route("/api");
  api.record(UpstreamOutcome::ok, 0.003);
  EXPECT_EQ(m.route("/api").requests, api.requests);  // a rebuilt route keeps counting on the same children
  const std::string text = m.serialize();
  EXPECT_EQ(sample(text, "coapgw_messages_total{direction=\"in\",type=\"con\"}"), 1.0);
  EXPECT_EQ(sample(text, "coapgw_messages_total{direction=\"out\",type=\"ack\"}"), 2.0);
  EXPECT_EQ(sample(text, "coapgw_messages_total{direction=\"out\",type=\"con\"}"), 0.0);
  EXPECT_EQ(sample(text, "coapgw_sessions_closed_total{proto=\"dtls\",reason=\"evicted\"}"), 1.0);
  EXPECT_EQ(sample(text, "coapgw_sessions_closed_total{proto=\"udp\",reason=\"evicted\"}"), 0.0);
  EXPECT_EQ(sample(text, "coapgw_dtls_handshakes_total{result=\"timeout\"}"), 1.0);
  EXPECT_EQ(sample(text, "coapgw_config_reloads_total{result=\"failed\"}"), 1.0);
  EXPECT_EQ(sample(text, "coapgw_bad_messages_total{reason=\"truncated_option\"}"), 1.0);
  EXPECT_EQ(sample(text, "coapgw_bad_messages_total{reason=\"too_short\"}"), 0.0);
  EXPECT_EQ(sample(text, "coapgw_requests_total{code=\"2.05\",method=\"GET\"}"), 3.0);
  EXPECT_EQ(sample(text, "coapgw_upstream_requests_total{outcome=\"ok\",route=\"/api\"}"), 1.0);
  EXPECT_EQ(sample(text, "coapgw_upstream_requests_total{outcome=\"timeout\",route=\"/api\"}"), 0.0);
  EXPECT_EQ(sample(text, "coapgw_upstream_duration_seconds_count{route=\"/api\"}"), 1.0);
  EXPECT_EQ(sample(text, "coapgw_upstream_duration_seconds_bucket{route=\"/api\",le=\"0.001\"}"),
            0.0);
  EXPECT_EQ(sample(text, "coapgw_upstream_duration_seconds_bucket{route=\"/api\",le=\"0.005\"}"),
            1.0);
  EXPECT_EQ(sample(text, "coapgw_upstream_duration_seconds_bucket{route=\"/api\",le=\"30\"}"),
            1.0);
}

TEST(Metrics, SessionSourcesAreSummedAtEachScrape) {
  Metrics m("t");
  SessionCounts worker_a, worker_b;  // what each worker's table holds right now
  m.add_session_source([&](SessionCounts& c) {
    for (std::size_t p = 0; p < SessionCounts::protos; ++p) {
      c.idle[p] += worker_a.idle[p];
      for (std::size_t t = 0; t < SessionCounts::types; ++t)
        for (std::size_t s = 0; s < SessionCounts::states; ++s)
          c.sessions[p][t][s] += worker_a.sessions[p][t][s];
    }
  });
  m.add_session_source([&](SessionCounts& c) {
    c.at(Proto::dtls, SessionType::server, SessionState::established) +=
        worker_b.at(Proto::dtls, SessionType::server, SessionState::established);
    c.idle_at(Proto::dtls) += worker_b.idle_at(Proto::dtls);
  });
  const std::string established =
      "coapgw_sessions{proto=\"dtls\",state=\"established\",type=\"server\"}";

  worker_a.at(Proto::dtls, SessionType::server, SessionState::established) = 3;
  worker_a.at(Proto::udp, SessionType::server, SessionState::established) = 1;
  worker_a.idle_at(Proto::dtls) = 1;
  worker_b.at(Proto::dtls, SessionType::server, SessionState::established) = 4;
  worker_b.idle_at(Proto::dtls) = 2;
  std::string text = m.serialize();
  EXPECT_EQ(sample(text, established), 7.0);
  EXPECT_EQ(sample(text, "coapgw_sessions{proto=\"udp\",state=\"established\",type=\"server\"}"), 1.0);
  EXPECT_EQ(sample(text, "coapgw_sessions_idle{proto=\"dtls\"}"), 3.0);
  EXPECT_EQ(sample(text, "coapgw_sessions_idle{proto=\"udp\"}"), 0.0);

  // Devices leave: the next scrape says 0 again, nothing sticks.
  worker_a = SessionCounts{};
  worker_b = SessionCounts{};
  text = m.serialize();
  EXPECT_EQ(sample(text, established), 0.0);
  EXPECT_EQ(sample(text, "coapgw_sessions{proto=\"udp\",state=\"established\",type=\"server\"}"), 0.0);
  EXPECT_EQ(sample(text, "coapgw_sessions_idle{proto=\"dtls\"}"), 0.0);
}

// Label sets "proto/type/state" of every coapgw_sessions sample in `text`.
std::set<std::string> session_label_sets(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  auto label = [](const std::string& line, const std::string& key) {
    auto at = line.find(key + "=\"");
    if (at == std::string::npos) return std::string("?");
    at += key.size() + 2;
    return line.substr(at, line.find('"', at) - at);
  };
  for (std::string l; std::getline(in, l);)
    if (l.starts_with("coapgw_sessions{"))
      out.insert(label(l, "proto") + "/" + label(l, "type") + "/" + label(l, "state"));
  return out;
}

TEST(Metrics, SessionGaugesExportOnlyTheStatesASessionCanBeIn) {
  Metrics m("t");
  // Written out, not derived from session_series(): README's metrics section has the same table.
  const std::set<std::string> expected{
      "udp/server/established",
      "udp/client/established",
      "dtls/server/handshake",  "dtls/server/established",
      "dtls/client/none",       "dtls/client/handshake",   "dtls/client/established",
      "dtls/hello/handshake",
      "tcp/server/csm",         "tcp/server/established",  "tcp/client/established",
      "tls/server/connecting",  "tls/server/csm",          "tls/server/established", "tls/client/established",
      "ws/server/connecting",   "ws/server/csm",           "ws/server/established",  "ws/client/established",
      "wss/server/connecting",  "wss/server/csm",          "wss/server/established", "wss/client/established",
  };
  EXPECT_EQ(session_label_sets(m.serialize()), expected);
  // Counts a worker reports for a combination that cannot happen are not exported either.
  m.add_session_source([](SessionCounts& c) { c.at(Proto::udp, SessionType::hello, SessionState::csm) += 1; });
  EXPECT_EQ(session_label_sets(m.serialize()), expected);
}

template <typename E>
void expect_names_round_trip() {
  std::set<std::string_view> seen;
  for (std::size_t i = 0; i < count<E>; ++i) {
    const auto e = static_cast<E>(i);
    const auto text = name(e);
    EXPECT_FALSE(text.empty()) << i;
    EXPECT_TRUE(seen.insert(text).second) << "duplicate name " << text;
    EXPECT_EQ(from_name<E>(text), e) << text;
  }
  EXPECT_EQ(from_name<E>("no_such_name"), std::nullopt);
}

TEST(Labels, NamesRoundTrip) {
  expect_names_round_trip<Proto>();
  expect_names_round_trip<SessionType>();
  expect_names_round_trip<SessionState>();
  expect_names_round_trip<MsgType>();
  expect_names_round_trip<CloseReason>();
  expect_names_round_trip<HandshakeResult>();
  expect_names_round_trip<AdminReject>();
  expect_names_round_trip<UpstreamOutcome>();
  expect_names_round_trip<BadReason>();
  expect_names_round_trip<DownlinkOutcome>();
  expect_names_round_trip<ApiReject>();
}

// DESIGN "Downlink": the families exist from start-up, every outcome at 0.
TEST(Metrics, DownlinkFamiliesExistAtZero) {
  Metrics m("1.2.3");
  m.downlink_requests(DownlinkOutcome::queued).Increment();
  m.api_rejected(ApiReject::unauthorized).Increment(2);
  const std::string text = m.serialize();
  EXPECT_TRUE(has_line(text, "# TYPE coapgw_downlink_requests_total counter"));
  EXPECT_TRUE(has_line(text, "# TYPE coapgw_downlink_queued gauge"));
  EXPECT_TRUE(has_line(text, "# TYPE coapgw_observations gauge"));
  EXPECT_TRUE(has_line(text, "# TYPE coapgw_notifications_total counter"));
  for (const char* outcome : {"answered", "timeout", "expired", "cancelled", "rejected", "no_session"})
    EXPECT_EQ(sample(text, std::string("coapgw_downlink_requests_total{outcome=\"") + outcome + "\"}"), 0.0)
        << outcome;
  EXPECT_EQ(sample(text, "coapgw_downlink_requests_total{outcome=\"queued\"}"), 1.0);
  EXPECT_EQ(sample(text, "coapgw_api_rejected_total{reason=\"unauthorized\"}"), 2.0);
  EXPECT_EQ(sample(text, "coapgw_downlink_queued"), 0.0);
  EXPECT_EQ(sample(text, "coapgw_notifications_total"), 0.0);
}

TEST(Labels, BadReasonsKeepTheirNames) {
  // Every reason the gateway counted before reasons became an enum (dashboards and tests use them).
  for (const char* reason :
       {"too_short", "bad_version", "bad_token_length", "truncated_token", "reserved_nibble", "truncated_option",
        "option_number_overflow", "payload_marker_without_payload", "too_many_options", "empty_with_content",
        "oversize", "empty_non", "unexpected_response", "reserved_code", "unexpected_ack", "message_id_reused",
        "outstanding_full", "proxy_unsupported", "wrong_authority", "bad_path", "body_too_large",
        "reassemblies_full", "reassemblies_session_full", "block_cache_full", "block_cache_session_full",
        "session_table_full", "dtls_bad_record", "dtls_no_session", "dtls_malformed_hello", "handshakes_per_ip", "hello_rate_limited",
        "hello_for_live_session"})
    EXPECT_TRUE(from_name<BadReason>(reason).has_value()) << reason;
  EXPECT_EQ(count<BadReason>, 32u);
  for (const char* outcome :
       {"ok", "upstream_error", "connect_failed", "timeout", "overloaded", "bad_response", "not_implemented"})
    EXPECT_TRUE(from_name<UpstreamOutcome>(outcome).has_value()) << outcome;
}

// Runs Debian's prometheus_client text parser over the rendered text and
// returns its summary (one "family type samples" line per family), or the
// parser's error output.
std::string parse_with_python(const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto stem = "coapgw_metrics_test_" + std::to_string(::getpid());
  const auto text_path = dir / (stem + ".prom");
  const auto script_path = dir / (stem + ".py");
  std::ofstream(text_path) << text;
  std::ofstream(script_path)
      << "import sys\n"
         "from prometheus_client.parser import text_string_to_metric_families\n"
         "data = open(sys.argv[1]).read()\n"
         "for f in text_string_to_metric_families(data):\n"
         "    print(f.name, f.type, len(f.samples))\n";
  const std::string cmd = std::string(COAPGW_SYSTEM_PYTHON) + " " + script_path.string() + " " +
                          text_path.string() + " 2>&1";
  std::string out;
  if (FILE* pipe = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
    const int rc = ::pclose(pipe);
    if (rc != 0) out = "parser failed (" + std::to_string(rc) + "): " + out;
  } else {
    out = "popen failed";
  }
  std::filesystem::remove(text_path);
  std::filesystem::remove(script_path);
  return out;
}

TEST(Metrics, RenderedTextParsesWithPrometheusClient) {
  Metrics m("0.1.0");
  m.bad_messages(BadReason::dtls_bad_record).Increment();
  m.route("/bad \"quoted\" \\ route\n").record(UpstreamOutcome::timeout, 0.2);  // label escaping must hold up
  m.add_session_source([](SessionCounts& c) { c.at(Proto::udp, SessionType::server,
                                                   SessionState::established) += 2; });
  const std::string summary = parse_with_python(m.serialize());
  ASSERT_EQ(summary.find("parser failed"), std::string::npos) << summary;
  // prometheus_client names counter families without the _total suffix.
  EXPECT_TRUE(has_line(summary, "coapgw_sessions gauge 23")) << summary;
  EXPECT_TRUE(has_line(summary, "coapgw_sessions_idle gauge 6")) << summary;
  EXPECT_TRUE(has_line(summary, "coapgw_sessions_closed counter 48")) << summary;
  EXPECT_TRUE(has_line(summary, "coapgw_messages counter 8")) << summary;
  EXPECT_TRUE(has_line(summary, "coapgw_bad_messages counter 32")) << summary;  // every reason
  EXPECT_TRUE(has_line(summary, "coapgw_build_info gauge 1")) << summary;
  EXPECT_TRUE(has_line(summary, "coapgw_requests counter 0")) << summary;  // declared, unused
  EXPECT_TRUE(has_line(summary, "coapgw_upstream_requests counter 7")) << summary;  // every outcome
  // 14 buckets + +Inf + _sum + _count
  EXPECT_TRUE(has_line(summary, "coapgw_upstream_duration_seconds histogram 17")) << summary;
}

}  // namespace
}  // namespace coapgw::metrics
