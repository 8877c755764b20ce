#include "dtls/failure_backoff.hpp"

#include <algorithm>

namespace coapgw::dtls {


bool FailureBackoff::blocked(const Address& peer, time_point now) {
  if (settings_.after == 0 || entries_.empty()) return false;
  auto it = entries_.find(peer);
  if (it == entries_.end()) return false;
  if (forgotten(it->second, now)) {
    entries_.erase(it);
    return false;
  }
  return now < it->second.until;
}

void FailureBackoff::on_failure(const Address& peer, time_point now) {
  if (settings_.after == 0) return;
  const Address& ip = peer;
  auto it = entries_.find(ip);
  if (it == entries_.end()) {
    if (entries_.size() >= settings_.max_addresses) make_room(now);
    it = entries_.emplace(ip, Entry{}).first;
  } else if (forgotten(it->second, now)) {
    it->second = Entry{};
  }
  Entry& e = it->second;
  ++e.failures;
  e.last_failure = now;
  if (e.failures < settings_.after) return;
  // initial, 2 x initial, 4 x initial, ... up to max.
  const std::uint32_t doublings = std::min<std::uint32_t>(e.failures - settings_.after, 30);
  auto hold = settings_.initial;
  for (std::uint32_t i = 0; i < doublings && hold < settings_.max; ++i) hold *= 2;
  e.until = now + std::min(hold, settings_.max);
}

void FailureBackoff::on_success(const Address& peer) {
  if (!entries_.empty()) entries_.erase(peer);
}

void FailureBackoff::make_room(time_point now) {
  // Forgotten entries first; otherwise the one whose last failure is oldest. O(n), but only when
  // the table is full, which takes max_addresses distinct addresses that each completed a cookie
  // exchange and failed.
  auto victim = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (forgotten(it->second, now)) {
      victim = it;
      break;
    }
    if (victim == entries_.end() || it->second.last_failure < victim->second.last_failure) victim = it;
  }
  if (victim != entries_.end()) {
    entries_.erase(victim);
    ++evicted_;
  }
}

}  // namespace coapgw::dtls
