// coapgw::metrics::RouteMetrics — the Prometheus children of one route, resolved once when the
// route is built (Metrics::route()), so that recording a forwarded request is two atomic updates.
// Kept apart from metrics.hpp so that a worker can hold them without the registry's headers.
#pragma once

#include <array>

#include "metrics/labels.hpp"

namespace prometheus {
class Counter;
class Histogram;
}  // namespace prometheus

namespace coapgw::metrics {

// coapgw_upstream_requests_total{route,outcome} for every outcome (all at 0 from the moment the
// route is built) and coapgw_upstream_duration_seconds{route}.
struct RouteMetrics {
  std::array<prometheus::Counter*, count<UpstreamOutcome>> requests{};
  prometheus::Histogram* duration = nullptr;
  // One forwarded request ended with `outcome` after `seconds`. Lock-free.
  void record(UpstreamOutcome outcome, double seconds) const;
};

}  // namespace coapgw::metrics
