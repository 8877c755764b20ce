// coapgw-bench retry policy — exponential back-off with jitter up to a deadline (see retry_policy.hpp).
#include "retry_policy.hpp"

#include <algorithm>

namespace coapgw::bench {

std::optional<std::uint64_t> RetryPolicy::next_attempt(std::uint32_t failures, std::uint64_t now_ns,
                                                       double draw) const {
  if (deadline_ns == 0 || failures == 0) return std::nullopt;
  std::uint64_t delay = initial_ns;
  for (std::uint32_t i = 1; i < failures && delay < cap_ns; ++i) delay *= 2;
  delay = std::min(delay, cap_ns);
  const double share = 0.5 + 0.5 * std::clamp(draw, 0.0, 1.0);
  const auto jittered = static_cast<std::uint64_t>(static_cast<double>(delay) * share);
  const std::uint64_t at = now_ns + std::max<std::uint64_t>(jittered, 1);
  if (at >= deadline_ns) return std::nullopt;
  return at;
}

}  // namespace coapgw::bench
