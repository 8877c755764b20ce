#include "server/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace coapgw::server {

RateLimiter::RateLimiter(Settings settings) : settings_(settings) {
  if (settings_.burst <= 0) settings_.burst = std::max(1.0, settings_.requests_per_second);
}

double RateLimiter::refill(const Bucket& b, time_point now) const {
  const double elapsed = std::chrono::duration<double>(now - b.last).count();
  return std::min(settings_.burst, b.tokens + std::max(0.0, elapsed) * settings_.requests_per_second);
}

void RateLimiter::drop_full(time_point now) {
  // Sweeps at most once per time a bucket takes to fill from empty, so a table full of busy
  // devices does not cost a scan per request.
  if (now < next_sweep_) return;
  std::erase_if(buckets_, [&](const auto& item) { return refill(item.second, now) >= settings_.burst; });
  next_sweep_ = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                          std::chrono::duration<double>(settings_.burst / settings_.requests_per_second));
}

std::optional<std::uint32_t> RateLimiter::take(std::string_view device, time_point now) {
  if (!enabled()) return std::nullopt;
  auto it = buckets_.find(device);
  if (it == buckets_.end()) {
    if (buckets_.size() >= settings_.max_buckets) drop_full(now);
    if (buckets_.size() >= settings_.max_buckets) return std::nullopt;  // untracked (see header)
    it = buckets_.emplace(std::string(device), Bucket{settings_.burst, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = refill(b, now);
  b.last = now;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return std::nullopt;
  }
  const double wait = (1.0 - b.tokens) / settings_.requests_per_second;
  return static_cast<std::uint32_t>(std::clamp(std::ceil(wait), 1.0, 86400.0));
}

}  // namespace coapgw::server
