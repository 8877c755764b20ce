// coapgw::api queue snapshot — the sleepy-device queue (DownlinkQueue) as
// bytes, so that queued requests survive a graceful restart with
// sessions.persist (the runtime seals and stores the bytes beside the session
// file). Pure: no I/O, no clock (both clocks are passed in; steady times are
// stored as wall-clock milliseconds and mapped back on load).
//
// What is kept: every record with its id (queued ones, sent ones whose answer
// the restart lost, which are queued again, and finished ones still readable),
// and the next id, so ids stay valid and unique after the restart. Bounded:
// a snapshot holds at most max_snapshot_records records; on load the queue's
// own bounds apply and what does not fit is dropped and counted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "api/downlink_queue.hpp"

namespace coapgw::api {

inline constexpr std::size_t max_snapshot_records = 1'000'000;

struct Clocks {
  TimePoint steady;
  std::int64_t unix_ms = 0;
};

// CBOR bytes of the queue's records (at most max_snapshot_records).
std::string save_queue(const DownlinkQueue& queue, Clocks now);

struct QueueLoad {
  std::size_t queued = 0;    // back in state queued (expired ones included: expire() reports them)
  std::size_t finished = 0;  // readable records
  std::size_t dropped = 0;   // past the queue's bounds, or a duplicate id
};
// Restores a snapshot into `queue` (normally empty). nullopt + error for bytes
// that are not a snapshot; nothing is partly trusted then.
std::optional<QueueLoad> load_queue(DownlinkQueue& queue, std::string_view bytes, Clocks now, std::string* error);

}  // namespace coapgw::api
