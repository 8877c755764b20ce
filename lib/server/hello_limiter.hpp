// coapgw::server::HelloLimiter — how many HelloVerifyRequests one address gets per second.
//
// A ClientHello without a valid cookie is answered statelessly with a HelloVerifyRequest sent to
// its source address. Anyone can forge that address, so a flood of forged ClientHellos would make
// the gateway send a stream of HelloVerifyRequests to a real device (costing its battery and
// downlink). A real device needs one or two per handshake; beyond `per_second` to one address and
// port within a second, the rest are dropped (counted by the caller). The table is a fixed array
// indexed by a hash of the address: no allocation, and a collision only makes two addresses share
// a budget. Pure: time is passed in.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include "common/address.hpp"

namespace coapgw::server {

class HelloLimiter {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr std::size_t slots = 4096;

  explicit HelloLimiter(std::uint32_t per_second = 8) : per_second_(per_second) {}

  // True when one more HelloVerifyRequest may go to `peer` at `now`.
  bool allow(const Address& peer, time_point now) {
    Slot& s = table_[peer.hash() % slots];
    const auto second = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    if (!(s.peer == peer) || s.second != second) {
      s.peer = peer;
      s.second = second;
      s.count = 0;
    }
    if (s.count >= per_second_) return false;
    ++s.count;
    return true;
  }

 private:
  struct Slot {
    Address peer;
    std::int64_t second = -1;
    std::uint32_t count = 0;
  };
  std::uint32_t per_second_;
  std::array<Slot, slots> table_{};
};

}  // namespace coapgw::server
