// devices.rate_limit (issue 16): the server role's one check in the request path (on_request),
// a token bucket per device through RateLimiter.
#include <prometheus/counter.h>

#include <string>

#include "metrics/metrics.hpp"
#include "server/dtls_tls.hpp"
#include "server/server_role.hpp"

namespace coapgw::server {

std::optional<std::uint32_t> ServerRole::over_rate_limit(session::Session& s, session::TimePoint now) {
  if (!limiter_.enabled()) return std::nullopt;
  // A DTLS device by its identity (all its sessions on this worker share one bucket), a plain one
  // (or a DTLS one without an identity) by its address.
  const auto identity = device_identity(s);
  // Addresses begin with a NUL, which no PSK identity holds: the two never share a bucket.
  auto retry_after = !identity.empty() ? limiter_.take(identity, now)
                                       : limiter_.take(std::string(1, '\0') + s.addr_remote().to_string(), now);
  if (retry_after) metrics_.rate_limited(static_cast<metrics::Proto>(static_cast<int>(s.proto()) - 1)).Increment();
  return retry_after;
}

}  // namespace coapgw::server
