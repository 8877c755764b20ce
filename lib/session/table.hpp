// coapgw::session::Table — the per-worker session table: key index, idle pool, reclaim, expiry.
//
// One worker thread owns a Table; nothing here locks. Lookup and insert are one hash-map operation;
// the idle pool is an intrusive doubly linked list in last-use order, so touching a session, taking
// the least recently used idle session for a newcomer, and expiring idle sessions are all O(1) per
// session and never scan. The session budget (`sessions.max`) is shared by all workers through one
// atomic counter that only changes when a session is created or freed, never per datagram.
// Per-(proto, type, state) counts are kept on every transition as relaxed atomics so the metrics
// scrape, on another thread, can read them without posting to the worker.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <unordered_map>

#include "session/session.hpp"

namespace coapgw::session {

// sessions.max for the whole process, shared by every worker's table.
class Budget {
 public:
  explicit Budget(std::size_t max) : max_(max) {}
  bool try_acquire() {
    auto n = used_.load(std::memory_order_relaxed);
    while (n < max_) {
      if (used_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
    }
    return false;
  }
  void release() { used_.fetch_sub(1, std::memory_order_relaxed); }
  std::size_t used() const { return used_.load(std::memory_order_relaxed); }
  std::size_t max() const { return max_; }

 private:
  const std::size_t max_;
  std::atomic<std::size_t> used_{0};
};

// Session counts readable from any thread.
struct Counts {
  std::array<std::array<std::array<std::atomic<std::int64_t>, state_count>, type_count>, proto_count> by_pts{};
  std::array<std::atomic<std::int64_t>, proto_count> idle{};
  std::int64_t sessions(Proto p, Type t, State s) const {
    return by_pts[static_cast<int>(p)][static_cast<int>(t)][static_cast<int>(s)].load(std::memory_order_relaxed);
  }
  std::int64_t idle_of(Proto p) const { return idle[static_cast<int>(p)].load(std::memory_order_relaxed); }
};

// Lifetime statistics the worker turns into Prometheus counters.
struct TableStats {
  std::uint64_t created[proto_count] = {};
  std::uint64_t reused[proto_count] = {};     // an idle session resumed by its peer
  std::uint64_t closed[proto_count][8] = {};  // by CloseReason
  std::uint64_t refused_full = 0;             // no budget and no idle session to reclaim
};

struct EventInfo {
  Event event;
  std::optional<CloseReason> reason;
};
using EventHandler = std::function<void(Session&, const EventInfo&)>;

class Table {
 public:
  struct Settings {
    std::chrono::milliseconds idle_timeout{300000};
    int worker_index = 0;
  };
  Table(Context* context, Budget& budget, Settings settings, EventHandler on_event = {});
  ~Table();
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  Session* find(const Key& key);
  // Finds the session for a datagram from `key` and marks it used at `now`: LRU touch, and
  // `reused` counted when it was idle. nullptr when there is none.
  Session* lookup_and_touch(const Key& key, TimePoint now);
  // The same accounting for a session already found: used by DTLS once a record authenticated,
  // so spoofed datagrams cannot keep a session from expiring.
  void mark_used(Session& session, TimePoint now);

  // A server session (refcount 0, in the idle pool until referenced), born in state `initial` so
  // that the per-state counts never see it in a state it does not have (a plain CoAP session is
  // established at once, a DTLS one in handshake). When the budget
  // is exhausted, the least recently used idle session of this table is reclaimed (closed with
  // `evicted`) to make room; nullptr when there is none to reclaim (counted in refused_full).
  // A plain UDP newcomer, whose address nobody verified, reclaims only idle plain UDP sessions:
  // a flood of spoofed datagrams must not evict sessions whose peers proved who they are. Any
  // newcomer takes an idle plain session before an idle DTLS one, whatever their ages.
  Session* create_server(const Key& key, const Address& local, int ifindex, TimePoint now,
                         State initial = State::none);
  // A client session (refcount 1). Same budget rule.
  Session* create_client(const Key& key, const Address& local, TimePoint now);

  void touch(Session& session, TimePoint now);
  // Moves an open server session to a new remote address (its key changes with it): a DTLS session
  // whose peer's address changed (RFC 9146 Connection ID). False when another session holds the
  // new key, or the session is closed or a multicast client session.
  bool move_remote(Session& session, const Address& remote);
  // Ends a session for `reason`: leaves the key index, emits session_closed, frees it now if
  // unreferenced or when the last reference goes.
  void close(Session& session, CloseReason reason);
  // Frees idle sessions unused for idle_timeout; returns how many.
  std::size_t expire(TimePoint now);
  // When the next idle session would expire (nullopt when the pool is empty).
  std::optional<TimePoint> next_expiry() const;
  // Closes every session (shutdown); referenced ones are freed when released.
  void close_all(CloseReason reason);

  std::size_t size() const { return by_key_.size(); }
  std::size_t idle_count() const { return idle_count_; }
  std::size_t detached_count() const { return detached_.size(); }
  const Counts& counts() const { return counts_; }
  const TableStats& stats() const { return stats_; }
  Context* context() const { return context_; }
  std::chrono::milliseconds idle_timeout() const { return settings_.idle_timeout; }
  void set_idle_timeout(std::chrono::milliseconds t) { settings_.idle_timeout = t; }

  template <typename F>
  void for_each(F&& f) const {
    for (auto& [key, session] : by_key_) f(*session);
  }
  Session* find_by_id(std::uint64_t id) const;  // O(n); admin only

 private:
  friend class Session;
  Session* make(const Key& key, const Address& local, Type type, TimePoint now, State state = State::none);
  bool make_room(Proto newcomer);
  Session* reclaim_candidate(Proto newcomer) const;
  Session* oldest_idle() const;
  void pool_push_back(Session& s);   // most recently used end
  void pool_remove(Session& s);
  void on_reference(Session& s);
  void on_release(Session& s);
  void on_state_change(Session& s, State from, State to);
  void on_type_change(Session& s, Type from, Type to);
  void count(Session& s, int delta);
  void free(Session& s);
  void emit(Session& s, Event e, std::optional<CloseReason> r = std::nullopt);

  Context* context_;
  Budget& budget_;
  Settings settings_;
  EventHandler on_event_;
  std::unordered_map<Key, std::unique_ptr<Session>, KeyHash> by_key_;
  // Closed while still referenced: owned here until the last release.
  std::unordered_map<Session*, std::unique_ptr<Session>> detached_;
  // One idle pool per protocol, each ordered by last use.
  std::array<Session*, proto_count> pool_head_{};  // least recently used
  std::array<Session*, proto_count> pool_tail_{};  // most recently used
  std::size_t idle_count_ = 0;
  std::uint64_t next_id_;
  std::minstd_rand mid_rng_{std::random_device{}()};
  Counts counts_;
  TableStats stats_;
};

}  // namespace coapgw::session
