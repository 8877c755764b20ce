// The worker's device-registry wiring (issue 16): the PSK lookup's HTTP client on this worker's
// io_context, and its answers handed to the DTLS transport (registry_path.cpp) with the datagrams
// they release sent at once; and devices.rate_limit, the one check in the request path.
#include <prometheus/counter.h>

#include "metrics/metrics.hpp"
#include "server/rate_limiter.hpp"
#include "server/worker_internal.hpp"
#include "upstream/http_upstream.hpp"

namespace coapgw::server {

void Worker::enable_psk_lookup(PskLookup::Settings settings) {
  upstream::RouteSpec spec;
  spec.prefix = "/";
  spec.upstream = PskLookup::origin_of(settings.url);
  spec.timeout = settings.timeout;
  spec.max_in_flight = settings.max_in_flight;
  auto client = upstream::make_http_upstream(*io_, spec);
  dtls_->set_psk_lookup(std::make_unique<PskLookup>(
      std::move(settings), std::move(client), metrics_,
      [this](const std::string& identity, std::vector<PskLookup::Held> held) {
        dtls_->on_key_answer(identity, std::move(held), session::Clock::now());
        send_batch_->flush();
      }));
}

std::optional<std::uint32_t> Worker::over_rate_limit(session::Session& s, session::TimePoint now) {
  if (settings_.rate_limit_rps <= 0) return std::nullopt;
  if (!limiter_) {
    limiter_ = std::make_unique<RateLimiter>(
        RateLimiter::Settings{settings_.rate_limit_rps, static_cast<double>(settings_.rate_limit_burst)});
  }
  // A DTLS device by its identity (all its sessions on this worker share one bucket), a plain one
  // (or a DTLS one without an identity) by its address.
  const bool dtls = s.proto() == session::Proto::dtls;
  const auto identity = device_identity(s);
  // Addresses begin with a NUL, which no PSK identity holds: the two never share a bucket.
  auto retry_after = !identity.empty() ? limiter_->take(identity, now)
                                       : limiter_->take(std::string(1, '\0') + s.addr_remote().to_string(), now);
  if (retry_after) metrics_.rate_limited(dtls ? metrics::Proto::dtls : metrics::Proto::udp).Increment();
  return retry_after;
}

}  // namespace coapgw::server
