// coapgw::dtls::RegistryCache — what the device registry (dtls.psk.lookup) said about PSK
// identities that are not in the local keys: a key (with the device's tenant and whether it is
// banned) or "unknown" (404), each kept for its own time to live (cache_ttl, negative_ttl).
//
// One per worker, beside the immutable PskStore (which it does not change): the server context's
// PSK callback consults the store first, then this cache. Pure: the clock is passed in, nothing
// is fetched here (server::PskLookup asks the registry and fills it). Bounded: at most
// max_entries identities; a full cache drops its oldest negative entry first, a known one only
// when it holds no negative entry (and a negative answer never pushes out a known entry: it is not
// stored then), so a flood of unknown identities cannot push out the keys of live devices. Known
// entries dropped are reported, so that the ones live sessions use are asked again. Entries
// expire in the order they were stored (one TTL per kind), so expiry is two FIFO queues, not a
// scan. Not thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/secret.hpp"
#include "dtls/credentials.hpp"

namespace coapgw::dtls {

struct RegistryEntry {
  bool known = false;  // false: the registry does not know the identity (404)
  SecretString key;    // raw key bytes, known entries only
  std::string tenant;
  bool banned = false;
  // True when a handshake may use the key.
  bool usable() const { return known && !banned && !key.empty(); }
};

class RegistryCache {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  struct Settings {
    std::chrono::milliseconds cache_ttl{300000};
    std::chrono::milliseconds negative_ttl{30000};
    std::size_t max_entries = 262144;  // documented bound (README), per worker
  };

  explicit RegistryCache(Settings settings) : settings_(settings) {}

  // The entry whatever its age (expire() removes old ones); nullptr when none.
  const RegistryEntry* find(std::string_view identity) const;
  // The entry when it has not expired at `now`.
  const RegistryEntry* find_fresh(std::string_view identity, time_point now) const;
  // Stores (or replaces) the registry's answer for `identity`, fresh from `now`. The identities of
  // known entries dropped to make room are appended to `evicted_known` (when not null).
  void put(const std::string& identity, RegistryEntry entry, time_point now,
           std::vector<std::string>* evicted_known = nullptr);
  // Drops every entry expired at `now`. The identities of known entries dropped are appended to
  // `expired_known` (when not null): the ones a live session uses are asked again.
  void expire(time_point now, std::vector<std::string>* expired_known = nullptr);

  std::size_t size() const { return entries_.size(); }
  // Answers dropped (or, negative ones, not stored) because the cache was full.
  std::uint64_t evictions() const { return evictions_; }
  const Settings& settings() const { return settings_; }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Slot {
    RegistryEntry entry;
    time_point expires;
    std::uint64_t stamp = 0;  // which queue item is current (older ones are skipped)
  };
  struct Queued {
    std::uint64_t stamp;
    std::string identity;
  };
  // Pops the front of `queue` if it is stale or (with `due`) expired at `now`; true when popped.
  bool pop_front(std::deque<Queued>& queue, const time_point* due, std::vector<std::string>* expired_known);
  // Drops the oldest negative entry, else (unless `only_negative`) the oldest known one; false
  // when nothing could be dropped.
  bool evict_oldest(bool only_negative, std::vector<std::string>* evicted_known);

  Settings settings_;
  std::unordered_map<std::string, Slot, Hash, std::equal_to<>> entries_;
  std::deque<Queued> known_;    // by time stored (= by expiry)
  std::deque<Queued> unknown_;  // same for negative entries
  std::uint64_t next_stamp_ = 1;
  std::uint64_t evictions_ = 0;
};

// Whether credentials stand under the local keys and, where those do not know the identity, the
// registry's cached answer (DTLS and TLS sessions alike). A session made with a registry key
// (`registry_keyed`) whose answer is no longer cached stands until an answer says otherwise; one
// made with a local key that a reload removed is revoked unless the registry gave the same key.
Standing check_with_registry(const Credentials& credentials, const PskStore* psk, const TrustStore* trust,
                             const RegistryCache* registry, bool registry_keyed);

}  // namespace coapgw::dtls
