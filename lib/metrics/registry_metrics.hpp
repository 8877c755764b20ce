// coapgw::metrics registry labels — the label values of the device-registry metrics (issue 16):
// coapgw_psk_lookups_total{result}. Kept apart from labels.hpp so the registry's metrics stay in one
// place (registry_metrics.cpp registers the families on the shared Metrics).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "metrics/labels.hpp"

namespace coapgw::metrics {

// hit: answered from the registry cache (a key, an unknown or a banned device); miss: asked the
// registry, which gave a key; unknown: the registry said 404; error: the registry answered with
// something else (5xx, not well-formed) or could not be reached, or too many lookups were in
// flight; timeout: no answer within dtls.psk.lookup.timeout.
enum class PskLookupResult : std::uint8_t { hit, miss, unknown, error, timeout };
template <> inline constexpr std::size_t count<PskLookupResult> = 5;
std::string_view name(PskLookupResult);

}  // namespace coapgw::metrics
