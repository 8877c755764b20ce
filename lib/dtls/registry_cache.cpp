#include "dtls/registry_cache.hpp"

namespace coapgw::dtls {

const RegistryEntry* RegistryCache::find(std::string_view identity) const {
  auto it = entries_.find(identity);
  return it == entries_.end() ? nullptr : &it->second.entry;
}

const RegistryEntry* RegistryCache::find_fresh(std::string_view identity, time_point now) const {
  auto it = entries_.find(identity);
  if (it == entries_.end() || it->second.expires <= now) return nullptr;
  return &it->second.entry;
}

void RegistryCache::put(const std::string& identity, RegistryEntry entry, time_point now) {
  if (settings_.max_entries == 0) return;
  auto it = entries_.find(identity);
  if (it == entries_.end()) {
    while (entries_.size() >= settings_.max_entries) evict_oldest();
    it = entries_.emplace(identity, Slot{}).first;
  }
  const bool known = entry.known;
  Slot& slot = it->second;
  slot.entry = std::move(entry);
  slot.expires = now + (known ? settings_.cache_ttl : settings_.negative_ttl);
  slot.stamp = next_stamp_++;
  (known ? known_ : unknown_).push_back(Queued{slot.stamp, identity});
}

bool RegistryCache::pop_front(std::deque<Queued>& queue, const time_point* due,
                              std::vector<std::string>* expired_known) {
  if (queue.empty()) return false;
  auto& front = queue.front();
  auto it = entries_.find(front.identity);
  const bool stale = it == entries_.end() || it->second.stamp != front.stamp;
  if (!stale) {
    if (due != nullptr && it->second.expires > *due) return false;
    if (expired_known != nullptr && it->second.entry.known) expired_known->push_back(front.identity);
    entries_.erase(it);
  }
  queue.pop_front();
  return true;
}

void RegistryCache::expire(time_point now, std::vector<std::string>* expired_known) {
  while (pop_front(known_, &now, expired_known)) {
  }
  while (pop_front(unknown_, &now, nullptr)) {
  }
}

void RegistryCache::evict_oldest() {
  // The older of the two fronts goes (skipping stale queue items); each queue is in stamp order.
  const std::size_t before = entries_.size();
  while (entries_.size() == before && !(known_.empty() && unknown_.empty())) {
    const bool take_known =
        unknown_.empty() || (!known_.empty() && known_.front().stamp < unknown_.front().stamp);
    pop_front(take_known ? known_ : unknown_, nullptr, nullptr);
  }
  if (entries_.size() < before) ++evictions_;
}

}  // namespace coapgw::dtls
