// coapgw::server::persist — established DTLS sessions across a restart (sessions.persist).
//
// On SIGTERM the workers export each lean DTLS session (dtls::SessionState, which holds traffic
// keys) instead of sending close_notify; the gateway writes them here. On start the file is read
// back and its sessions wait in a RestoredPool until their device's next record arrives, on
// whichever worker the kernel hands it to. A restored session whose PSK or certificate no longer
// stands (checked at start, at every reload with RestoredPool::drop_if, and when claimed) is dropped
// and counted as revoked.
//
// File: "COAPGWP1", created_unix_ms (8), count (4), then per session last_seen_unix_ms (8),
// length (4), serialized state; then HMAC-SHA256 over everything before it. The HMAC key is 32
// random bytes in "<file>.key" (created on first use, mode 0600), so a file written by another
// installation, or altered, is refused; so is one older than max_age. Both files are mode 0600,
// written to a temporary name and renamed into place.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <span>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/address.hpp"
#include "common/secret.hpp"

namespace coapgw::server::persist {

struct Entry {
  std::int64_t last_seen_unix_ms = 0;
  SecretBytes state;  // dtls::serialize(SessionState): traffic keys, wiped when let go
};

// Writes atomically with mode 0600; false + error on failure.
bool write_file(const std::string& path, const std::vector<Entry>& entries, std::string* error);

struct ReadResult {
  std::vector<Entry> entries;  // those younger than max_age
  std::size_t skipped_stale = 0;
};
// nullopt + error for a missing, corrupt, foreign or stale file (never partly trusted).
std::optional<ReadResult> read_file(const std::string& path, std::chrono::milliseconds max_age, std::string* error);

// One sealed blob beside the session file (the downlink queue, api/queue_snapshot.hpp): "COAPGWQ1",
// created_unix_ms (8), the bytes, HMAC-SHA256 with the key of `key_of` ("<key_of>.key", the session
// file's), written and checked like the session file (mode 0600, atomic, max_age).
bool write_blob(const std::string& path, const std::string& key_of, std::string_view bytes, std::string* error);
std::optional<std::string> read_blob(const std::string& path, const std::string& key_of,
                                     std::chrono::milliseconds max_age, std::string* error);

// Restored sessions waiting for their device, shared by the workers. Only touched when a DTLS
// record arrives from a peer that has no session (after a restart), never on the hot path.
class RestoredPool {
 public:
  // The wall clock in Unix milliseconds, which last_seen_unix_ms is measured on (seam for tests).
  using WallClock = std::function<std::int64_t()>;
  RestoredPool();
  explicit RestoredPool(WallClock clock) : clock_(std::move(clock)) {}

  // `cid`: the RFC 9146 Connection ID the session issued (empty: none), so that a device whose
  // address changed while we were down still finds it.
  void add(const Address& peer, SecretBytes state, std::int64_t last_seen_unix_ms,
           std::span<const std::byte> cid = {});
  // The address the waiting session with Connection ID `cid` was saved under; nullopt when none
  // waits (any more).
  std::optional<Address> peer_of_cid(std::span<const std::byte> cid);
  // The state for `peer`, unless its device was last seen longer than `idle_timeout` ago (the
  // session would have expired had we not restarted).
  // `last_seen_unix_ms`, when given, receives the entry's time for put_back.
  std::optional<SecretBytes> take(const Address& peer, std::chrono::milliseconds idle_timeout,
                                  std::int64_t* last_seen_unix_ms = nullptr);
  // Returns a taken state that the datagram which claimed it could not authenticate: a spoofed
  // datagram from the device's address must not use up the device's restored session.
  // `last_seen_unix_ms` is take()'s: the device's own last record before our stop, which a datagram
  // that did not authenticate must not renew.
  void put_back(const Address& peer, SecretBytes state, std::int64_t last_seen_unix_ms);
  // Returns a taken state whose claiming record did authenticate but could not be restored yet (held
  // for the device registry's answer, or no room in the session table): the device was seen now, so
  // its idle time starts again, as a live session's would.
  void put_back_seen(const Address& peer, SecretBytes state);
  bool empty() const { return size_.load(std::memory_order_relaxed) == 0; }
  // Removes every waiting session for which `revoked(state)` is true (a reload changed keys or CA);
  // returns how many.
  std::size_t drop_if(const std::function<bool(std::span<const std::byte>)>& revoked);

 private:
  std::mutex mutex_;
  struct Waiting {
    SecretBytes state;
    std::int64_t last_seen_unix_ms;
  };
  std::unordered_map<Address, Waiting, AddressHash> by_peer_;
  // Kept when a state is taken, so that a put_back is found by CID again (at most one entry per
  // session read from the file).
  std::unordered_map<std::string, Address> by_cid_;
  std::atomic<std::size_t> size_{0};
  WallClock clock_;
};

}  // namespace coapgw::server::persist
