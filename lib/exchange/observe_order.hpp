// coapgw::exchange::ObserveOrder — RFC 7641 §3.4 reordering of notifications, pure: a notification
// is fresh (newer than the last one taken) when its 24-bit Observe sequence number is ahead of the
// last one within 2^23, or when more than 128 seconds passed since the last one (the numbers may
// have wrapped meanwhile). Stale ones are dropped by the caller. Time is passed in.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "exchange/transmission.hpp"

namespace coapgw::exchange {

class ObserveOrder {
 public:
  // true: `seq` received at `now` is fresh and becomes the last one taken.
  bool take(std::uint32_t seq, TimePoint now) {
    constexpr std::uint32_t half = 1u << 23;
    seq &= 0xffffff;
    const bool fresh = !last_ || (*last_ < seq && seq - *last_ < half) || (*last_ > seq && *last_ - seq > half) ||
                       now > last_time_ + std::chrono::seconds(128);
    if (fresh) {
      last_ = seq;
      last_time_ = now;
    }
    return fresh;
  }

 private:
  std::optional<std::uint32_t> last_;
  TimePoint last_time_{};
};

}  // namespace coapgw::exchange
