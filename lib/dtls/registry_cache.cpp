#include "dtls/registry_cache.hpp"

#include <openssl/crypto.h>

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

void RegistryCache::put(const std::string& identity, RegistryEntry entry, time_point now,
                        std::vector<std::string>* evicted_known) {
  if (settings_.max_entries == 0) return;
  const bool known = entry.known;
  auto it = entries_.find(identity);
  if (it == entries_.end()) {
    while (entries_.size() >= settings_.max_entries) {
      if (!evict_oldest(!known, evicted_known)) {
        ++evictions_;  // a negative answer with only known entries to drop: not stored
        return;
      }
    }
    it = entries_.emplace(identity, Slot{}).first;
  }
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

bool RegistryCache::evict_oldest(bool only_negative, std::vector<std::string>* evicted_known) {
  // Negative entries go first (oldest first, skipping stale queue items); known ones only when no
  // negative entry is left. Each queue is in stamp order.
  const std::size_t before = entries_.size();
  while (entries_.size() == before && !unknown_.empty()) pop_front(unknown_, nullptr, nullptr);
  while (!only_negative && entries_.size() == before && !known_.empty()) pop_front(known_, nullptr, evicted_known);
  if (entries_.size() == before) return false;
  ++evictions_;
  return true;
}

Standing check_with_registry(const Credentials& credentials, const PskStore* psk, const TrustStore* trust,
                             const RegistryCache* registry, bool registry_keyed) {
  const auto standing = check(credentials, psk, trust);
  if (standing != Standing::identity_unknown || registry == nullptr) return standing;
  const auto* entry = registry->find(credentials.identity);
  if (entry == nullptr) return registry_keyed ? Standing::valid : standing;
  if (!entry->usable()) return Standing::identity_unknown;
  const std::span<const std::byte> key(reinterpret_cast<const std::byte*>(entry->key.data()), entry->key.size());
  const bool same = key.size() == credentials.psk_key.size() &&
                    CRYPTO_memcmp(key.data(), credentials.psk_key.data(), key.size()) == 0;
  return same ? Standing::valid : Standing::key_changed;
}

}  // namespace coapgw::dtls
