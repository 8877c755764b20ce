// coapgw::api::DownlinkQueue — requests for sleepy devices (queue_for): held
// until the device is heard from again, then handed out to be sent. A pure,
// bounded data structure: no I/O, no clock of its own (every call takes
// `now`), no threads; the API owns one and drives it from its thread.
//
// Bounds: `per_device` and `total` count requests in state queued (429 when
// reached). Finished records (answered, expired, cancelled) stay readable by
// id for `finished_retention` and at most `total` of them are kept (the
// oldest goes first), so neither can grow without bound.
#pragma once

#include <chrono>
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "api/device_ref.hpp"
#include "api/downlink.hpp"

namespace coapgw::api {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

inline constexpr std::chrono::minutes finished_retention{10};

enum class QueuedState : std::uint8_t { queued, sent, answered, expired, cancelled };
std::string_view name(QueuedState s);

struct QueuedRequest {
  std::uint64_t id = 0;
  DeviceRef device;
  DownlinkRequest request;
  std::chrono::milliseconds timeout{0};  // for the exchange once sent
  TimePoint expires_at;                   // queued until then at the most
  QueuedState state = QueuedState::queued;
  std::optional<DownlinkResult> result;   // answered; expired after a send that failed
  TimePoint finished_at;
};

class DownlinkQueue {
 public:
  struct Limits {
    std::size_t per_device = 16;
    std::size_t total = 10000;
  };
  enum class PushError : std::uint8_t { device_full, total_full };
  struct PushResult {
    std::uint64_t id = 0;
    std::optional<PushError> error;
  };
  enum class CancelResult : std::uint8_t { cancelled, not_found, not_queued };

  explicit DownlinkQueue(Limits limits) : limits_(limits) {}
  // New bounds apply to later pushes; nothing queued is dropped.
  void set_limits(Limits limits) { limits_ = limits; }

  PushResult push(DeviceRef device, DownlinkRequest request, std::chrono::milliseconds timeout,
                  std::chrono::milliseconds queue_for, TimePoint now);
  // Any state; nullptr when unknown or already dropped.
  const QueuedRequest* find(std::uint64_t id) const;
  CancelResult cancel(std::uint64_t id, TimePoint now);
  // The device was heard from: its queued requests, oldest first, become sent
  // (copies are returned for sending; report each with finish()).
  std::vector<QueuedRequest> take(const std::string& device_key, TimePoint now);
  // The outcome of a request take() handed out: answered -> answered;
  // no_session -> queued again (the device went away before the send) unless
  // it expired meanwhile; timeout or rejected -> expired, result kept.
  void finish(std::uint64_t id, DownlinkResult result, TimePoint now);
  // Queued requests past their expiry become expired; finished records past
  // retention are dropped. Returns how many expired.
  std::size_t expire(TimePoint now);
  // The earliest time expire() has something to do, if any.
  std::optional<TimePoint> next_deadline() const;

  std::size_t queued() const { return queued_total_; }
  std::size_t queued_for(const std::string& device_key) const;
  std::size_t records() const { return entries_.size(); }
  // The keys of the devices with requests in state queued.
  std::shared_ptr<const std::unordered_set<std::string>> queued_devices() const;

  // Across a restart (queue_snapshot.hpp): every record, oldest id first, and
  // the id the next push gets.
  std::vector<const QueuedRequest*> records_by_id() const;
  std::uint64_t next_id() const { return next_id_; }
  // Puts a saved record back under its id. A sent record (its answer was lost
  // with the restart) is queued again. Refused (false) when the id is taken or
  // a queued record would pass the bounds. Later pushes get ids above it.
  bool restore(QueuedRequest record, TimePoint now);
  void reserve_ids_below(std::uint64_t id) { next_id_ = std::max(next_id_, id); }

 private:
  void to_finished(QueuedRequest& entry, QueuedState state, TimePoint now);
  void unlink_queued(const QueuedRequest& entry);
  void drop_finished(TimePoint now);

  Limits limits_;
  std::uint64_t next_id_ = 1;
  std::size_t queued_total_ = 0;
  std::unordered_map<std::uint64_t, QueuedRequest> entries_;
  std::unordered_map<std::string, std::deque<std::uint64_t>> by_device_;  // queued ids, oldest first
  std::multimap<TimePoint, std::uint64_t> expiries_;                      // queued ids by expiry
  std::deque<std::uint64_t> finished_;                                    // finished ids, oldest first
};

}  // namespace coapgw::api
