// coapgw::server::RateLimiter — devices.rate_limit: a token bucket per device (DTLS: its identity,
// plain CoAP: its address) on one worker, so one noisy device cannot take the others' share of the
// gateway. A request over the limit is answered 4.29 Too Many Requests with Max-Age saying when a
// token is there again (RFC 8516). Pure: the clock is passed in. Bounded: at most max_buckets
// devices are tracked per worker; when full, buckets that have filled up again (equivalent to none)
// are dropped, and if every bucket is still in use a new device goes untracked until there is room
// (counted by the caller as allowed: a limiter must not refuse devices it cannot tell apart).
// Not thread-safe: one per worker.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace coapgw::server {

class RateLimiter {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  struct Settings {
    double requests_per_second = 0;  // 0 = unlimited
    double burst = 0;                // bucket size; 0 = max(1, requests_per_second)
    std::size_t max_buckets = 65536; // documented bound, per worker
  };

  explicit RateLimiter(Settings settings);
  bool enabled() const { return settings_.requests_per_second > 0; }
  // Takes one token for `device`. nullopt: allowed; else the request is over the limit and the
  // value is the Max-Age to answer with: whole seconds until the next token, at least 1.
  std::optional<std::uint32_t> take(std::string_view device, time_point now);
  std::size_t size() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens = 0;
    time_point last{};
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  double refill(const Bucket& b, time_point now) const;
  void drop_full(time_point now);

  Settings settings_;
  std::unordered_map<std::string, Bucket, Hash, std::equal_to<>> buckets_;
  time_point next_sweep_{};
};

}  // namespace coapgw::server
