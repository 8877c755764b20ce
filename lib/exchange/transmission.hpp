// coapgw::exchange transmission parameters — RFC 7252 §4.8, one type for both roles (the worker's
// device sessions and the coap:// upstreams read the same `coap:` config section into it), and the
// injected random source the message layer draws its timeouts, message ids and tokens from.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace coapgw::exchange {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// Uniform 64-bit values. Injected so that unit tests fix the sequence; system_random() in use.
using Random = std::function<std::uint64_t()>;
// A PRNG seeded once from std::random_device (tokens need to be unguessable off-path, RFC 7252 §5.3.1,
// not secret: a 64-bit Mersenne twister seeded per owner is what libcoap-class stacks use).
Random system_random();

struct TransmissionParameters {
  std::chrono::milliseconds ack_timeout{2000};
  double ack_random_factor = 1.5;
  unsigned max_retransmit = 4;
  std::chrono::milliseconds max_latency{100000};
  // RFC 7252 §4.8.2 derived times.
  std::chrono::milliseconds processing_delay() const { return ack_timeout; }
  std::chrono::milliseconds max_transmit_span() const;
  std::chrono::milliseconds max_transmit_wait() const;
  std::chrono::milliseconds exchange_lifetime() const;
  std::chrono::milliseconds non_lifetime() const;
  // RFC 7252 §4.2: the first timeout of a CON, between ACK_TIMEOUT and ACK_TIMEOUT * ACK_RANDOM_FACTOR.
  std::chrono::milliseconds initial_timeout(std::uint64_t random) const;
};

}  // namespace coapgw::exchange
