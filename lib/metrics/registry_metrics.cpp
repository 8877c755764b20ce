// The device registry's metric families (issue 16), registered by Metrics' constructor.
#include "metrics/registry_metrics.hpp"

#include <array>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include "metrics/metrics.hpp"

namespace coapgw::metrics {

namespace {
constexpr std::array<std::string_view, count<PskLookupResult>> lookup_names{"hit", "miss", "unknown", "error",
                                                                            "timeout"};
static_assert(index(PskLookupResult::timeout) + 1 == count<PskLookupResult>);
}  // namespace

std::string_view name(PskLookupResult v) { return index(v) < lookup_names.size() ? lookup_names[index(v)] : ""; }

void Metrics::add_registry_families(prometheus::Registry& reg) {
  auto& lookups = prometheus::BuildCounter()
                      .Name("coapgw_psk_lookups_total")
                      .Help("PSK identities looked up in the device registry (dtls.psk.lookup), by result")
                      .Register(reg);
  for (std::size_t i = 0; i < count<PskLookupResult>; ++i)
    psk_lookups_[i] = &lookups.Add({{"result", std::string(name(static_cast<PskLookupResult>(i)))}});
  psk_cache_evictions_ = &prometheus::BuildCounter()
                              .Name("coapgw_psk_cache_evictions_total")
                              .Help("Registry answers dropped from a full PSK lookup cache before they expired")
                              .Register(reg)
                              .Add({});
  auto& limited = prometheus::BuildCounter()
                      .Name("coapgw_rate_limited_total")
                      .Help("Requests answered 4.29 because their device was over devices.rate_limit, by protocol")
                      .Register(reg);
  for (std::size_t i = 0; i < count<Proto>; ++i)
    rate_limited_[i] = &limited.Add({{"proto", std::string(name(static_cast<Proto>(i)))}});
}

prometheus::Counter& Metrics::psk_lookups(PskLookupResult r) { return *psk_lookups_[index(r)]; }
prometheus::Counter& Metrics::psk_cache_evictions() { return *psk_cache_evictions_; }
prometheus::Counter& Metrics::rate_limited(Proto p) { return *rate_limited_[index(p)]; }

}  // namespace coapgw::metrics
