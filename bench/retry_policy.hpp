// coapgw-bench retry policy — when a device whose set-up failed tries again (issue 17, item 3).
//
// A device whose handshake attempt timed out or failed (or whose first GET went unanswered) does
// not give up: like a real device under RFC 6347 it backs off and starts over with a new
// ClientHello, until the run's set-up deadline. The back-off doubles per failed attempt from
// `initial` up to `cap`, and each delay is drawn in [delay/2, delay) so that a crowd that failed
// together does not come back together. Pure logic: the caller passes the clock and the random draw.
#pragma once

#include <cstdint>
#include <optional>

namespace coapgw::bench {

struct RetryPolicy {
  std::uint64_t initial_ns = 2'000'000'000;  // back-off after the first failed attempt
  std::uint64_t cap_ns = 64'000'000'000;     // the longest back-off
  std::uint64_t deadline_ns = 0;             // no attempt starts at or after this (absolute); 0 = never retry

  // When the next attempt starts, given `failures` (>= 1) failed attempts so far, the time now and a
  // draw in [0, 1); nullopt when that would be at or past the deadline: the device gives up.
  std::optional<std::uint64_t> next_attempt(std::uint32_t failures, std::uint64_t now_ns, double draw) const;
};

}  // namespace coapgw::bench
