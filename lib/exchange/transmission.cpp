#include "exchange/transmission.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

namespace coapgw::exchange {

Random system_random() {
  auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
  return [engine] { return (*engine)(); };
}

std::chrono::milliseconds TransmissionParameters::max_transmit_span() const {
  // ACK_TIMEOUT * (2 ** MAX_RETRANSMIT - 1) * ACK_RANDOM_FACTOR
  double ms = static_cast<double>(ack_timeout.count()) * (std::pow(2.0, max_retransmit) - 1.0) * ack_random_factor;
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

std::chrono::milliseconds TransmissionParameters::max_transmit_wait() const {
  double ms = static_cast<double>(ack_timeout.count()) * (std::pow(2.0, max_retransmit + 1) - 1.0) * ack_random_factor;
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

std::chrono::milliseconds TransmissionParameters::exchange_lifetime() const {
  return max_transmit_span() + 2 * max_latency + processing_delay();
}

std::chrono::milliseconds TransmissionParameters::non_lifetime() const {
  return max_transmit_span() + max_latency;
}

std::chrono::milliseconds TransmissionParameters::initial_timeout(std::uint64_t random) const {
  const double unit = static_cast<double>(random >> 11) * 0x1.0p-53;  // [0, 1)
  const double factor = 1.0 + (std::max(1.0, ack_random_factor) - 1.0) * unit;
  return std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(ack_timeout.count()) * factor));
}

}  // namespace coapgw::exchange
