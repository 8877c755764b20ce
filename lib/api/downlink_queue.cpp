// The sleepy-device queue; see downlink_queue.hpp.
#include "api/downlink_queue.hpp"

#include <algorithm>
#include <array>

namespace coapgw::api {

std::string_view name(QueuedState s) {
  static constexpr std::array<std::string_view, 5> names{"queued", "sent", "answered", "expired", "cancelled"};
  return names[static_cast<std::size_t>(s)];
}

DownlinkQueue::PushResult DownlinkQueue::push(DeviceRef device, DownlinkRequest request,
                                              std::chrono::milliseconds timeout,
                                              std::chrono::milliseconds queue_for, TimePoint now) {
  const std::string key = device.key();
  if (queued_total_ >= limits_.total) return {0, PushError::total_full};
  if (queued_for(key) >= limits_.per_device) return {0, PushError::device_full};
  const std::uint64_t id = next_id_++;
  QueuedRequest entry;
  entry.id = id;
  entry.device = std::move(device);
  entry.request = std::move(request);
  entry.timeout = timeout;
  entry.expires_at = now + queue_for;
  expiries_.emplace(entry.expires_at, id);
  by_device_[key].push_back(id);
  entries_.emplace(id, std::move(entry));
  ++queued_total_;
  return {id, std::nullopt};
}

const QueuedRequest* DownlinkQueue::find(std::uint64_t id) const {
  const auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

std::size_t DownlinkQueue::queued_for(const std::string& device_key) const {
  const auto it = by_device_.find(device_key);
  return it == by_device_.end() ? 0 : it->second.size();
}

void DownlinkQueue::unlink_queued(const QueuedRequest& entry) {
  const auto device = by_device_.find(entry.device.key());
  if (device != by_device_.end()) {
    auto& ids = device->second;
    ids.erase(std::remove(ids.begin(), ids.end(), entry.id), ids.end());
    if (ids.empty()) by_device_.erase(device);
  }
  auto [first, last] = expiries_.equal_range(entry.expires_at);
  for (auto it = first; it != last; ++it) {
    if (it->second == entry.id) {
      expiries_.erase(it);
      break;
    }
  }
  --queued_total_;
}

void DownlinkQueue::to_finished(QueuedRequest& entry, QueuedState state, TimePoint now) {
  entry.state = state;
  entry.finished_at = now;
  finished_.push_back(entry.id);
  drop_finished(now);
}

void DownlinkQueue::drop_finished(TimePoint now) {
  const std::size_t keep = std::max<std::size_t>(limits_.total, 1);
  while (!finished_.empty()) {
    const auto it = entries_.find(finished_.front());
    const bool stale = it == entries_.end() || now - it->second.finished_at >= finished_retention;
    if (!stale && finished_.size() <= keep) break;
    if (it != entries_.end()) entries_.erase(it);
    finished_.pop_front();
  }
}

DownlinkQueue::CancelResult DownlinkQueue::cancel(std::uint64_t id, TimePoint now) {
  const auto it = entries_.find(id);
  if (it == entries_.end()) return CancelResult::not_found;
  if (it->second.state != QueuedState::queued) return CancelResult::not_queued;
  unlink_queued(it->second);
  to_finished(it->second, QueuedState::cancelled, now);
  return CancelResult::cancelled;
}

std::vector<QueuedRequest> DownlinkQueue::take(const std::string& device_key, TimePoint now) {
  std::vector<QueuedRequest> out;
  const auto device = by_device_.find(device_key);
  if (device == by_device_.end()) return out;
  const std::deque<std::uint64_t> ids = device->second;
  for (const auto id : ids) {
    auto& entry = entries_.at(id);
    if (entry.expires_at <= now) continue;  // expire() will report it
    unlink_queued(entry);
    entry.state = QueuedState::sent;
    out.push_back(entry);
  }
  return out;
}

void DownlinkQueue::finish(std::uint64_t id, DownlinkResult result, TimePoint now) {
  const auto it = entries_.find(id);
  if (it == entries_.end() || it->second.state != QueuedState::sent) return;
  QueuedRequest& entry = it->second;
  switch (result.status) {
    case DownlinkStatus::answered:
      entry.result = std::move(result);
      return to_finished(entry, QueuedState::answered, now);
    case DownlinkStatus::no_session:
      if (entry.expires_at > now) {
        // Back to the head of its device's line: it was the oldest.
        entry.state = QueuedState::queued;
        by_device_[entry.device.key()].push_front(id);
        expiries_.emplace(entry.expires_at, id);
        ++queued_total_;
        return;
      }
      break;
    case DownlinkStatus::timeout:
    case DownlinkStatus::rejected:
      break;
  }
  entry.result = std::move(result);
  to_finished(entry, QueuedState::expired, now);
}

std::size_t DownlinkQueue::expire(TimePoint now) {
  std::size_t expired = 0;
  while (!expiries_.empty() && expiries_.begin()->first <= now) {
    auto& entry = entries_.at(expiries_.begin()->second);
    unlink_queued(entry);
    to_finished(entry, QueuedState::expired, now);
    ++expired;
  }
  drop_finished(now);
  return expired;
}

std::shared_ptr<const std::unordered_set<std::string>> DownlinkQueue::queued_devices() const {
  auto keys = std::make_shared<std::unordered_set<std::string>>();
  for (const auto& [key, ids] : by_device_) keys->insert(key);
  return keys;
}

std::vector<const QueuedRequest*> DownlinkQueue::records_by_id() const {
  std::vector<const QueuedRequest*> out;
  out.reserve(entries_.size());
  for (const auto& [id, entry] : entries_) out.push_back(&entry);
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->id < b->id; });
  return out;
}

bool DownlinkQueue::restore(QueuedRequest record, TimePoint now) {
  if (record.id == 0 || entries_.count(record.id) != 0) return false;
  if (record.state == QueuedState::sent) record.state = QueuedState::queued;
  const std::uint64_t id = record.id;
  if (record.state == QueuedState::queued) {
    const std::string key = record.device.key();
    if (queued_total_ >= limits_.total || queued_for(key) >= limits_.per_device) return false;
    expiries_.emplace(record.expires_at, id);
    by_device_[key].push_back(id);
    ++queued_total_;
    entries_.emplace(id, std::move(record));
  } else {
    entries_.emplace(id, std::move(record));
    finished_.push_back(id);
    drop_finished(now);
  }
  reserve_ids_below(id + 1);
  return true;
}

std::optional<TimePoint> DownlinkQueue::next_deadline() const {
  std::optional<TimePoint> next;
  if (!expiries_.empty()) next = expiries_.begin()->first;
  if (!finished_.empty()) {
    const auto it = entries_.find(finished_.front());
    if (it != entries_.end()) {
      const TimePoint drop_at = it->second.finished_at + finished_retention;
      if (!next || drop_at < *next) next = drop_at;
    }
  }
  return next;
}

}  // namespace coapgw::api
