// coapgw::server::PskLookup — one worker's side of the device registry (dtls.psk.lookup): asks the
// registry for PSK identities that are not in the local keys, without blocking the worker.
//
// Owns the worker's dtls::RegistryCache (which the DTLS server context's and the stream TLS
// context's PSK callbacks read), the
// lookups in flight (at most one per identity, at most max_in_flight together; each is one GET
// through the forwarding HTTP client, pooled, with the lookup timeout), the handshake datagrams
// held until their identity's answer comes (bounded per handshake and in all), and the index of
// live sessions whose key came from the registry: when such an identity's entry expires (or is
// pushed out of a full cache) it is asked again, and the answer (banned, unknown, another key) may end those sessions. The
// transport decides what to hold and re-drives the held datagrams when told (`Answered`); the
// client is any upstream::Upstream, so unit tests give it a fake one. Worker thread only.
#pragma once

#include <chrono>
#include <deque>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/address.hpp"
#include "dtls/registry_cache.hpp"
#include "session/session.hpp"

namespace coapgw::metrics {
class Metrics;
}
namespace coapgw::upstream {
class Upstream;
struct ForwardResponse;
}  // namespace coapgw::upstream

namespace coapgw::server {

class PskLookup {
 public:
  struct Settings {
    std::string url;  // dtls.psk.lookup.url, with "{identity}" in its path
    std::chrono::milliseconds timeout{2000};
    dtls::RegistryCache::Settings cache;
    std::size_t max_in_flight = 256;  // this worker's share
    std::function<session::TimePoint()> clock = [] { return session::Clock::now(); };  // seam for tests
  };
  // Documented bounds (README): datagrams held per waiting handshake, and in all per lookup slot.
  static constexpr std::size_t max_held_per_handshake = 8;
  static constexpr std::size_t max_held_per_slot = 16;

  // A datagram of a handshake waiting for its key.
  struct Held {
    session::Key key;
    Address local;
    int ifindex = -1;
    bool wildcard = false;
    std::vector<std::byte> data;
    // A record for a session saved at our last stop (sessions.persist) whose identity only the
    // registry knows: re-driven as a fresh datagram once the answer is in.
    bool restore = false;
    // A coaps+tcp / coaps+ws connection (no data: the connection holds its own bytes) whose
    // session has `key`; the stream transport resumes it (stream_registry.cpp).
    bool stream = false;
  };
  // Called on the worker thread once the registry answered for `identity` (or failed: then the
  // cache has no usable entry and the held handshakes fail), with the datagrams held for it, oldest
  // first.
  using Answered = std::function<void(const std::string& identity, std::vector<Held> held)>;

  // The scheme://authority part of a lookup URL (the forwarding client's upstream), and its path.
  static std::string origin_of(std::string_view url);
  static std::string path_for(std::string_view url, std::string_view identity);

  PskLookup(Settings settings, std::unique_ptr<upstream::Upstream> client, metrics::Metrics& metrics,
            Answered answered);
  ~PskLookup();
  PskLookup(const PskLookup&) = delete;
  PskLookup& operator=(const PskLookup&) = delete;

  const dtls::RegistryCache& cache() const { return cache_; }

  enum class Verdict : std::uint8_t {
    proceed,  // the cache answers (a key, or a refusal): hand the datagram to the handshake now
    held,     // kept until the registry answers
    dropped,  // too much waiting already, or shut down (counted as result "error"): the device retransmits
  };
  // A handshake datagram whose ClientKeyExchange names `identity` (not in the local keys).
  // `make_held` is called only when the datagram is kept.
  Verdict need_key(std::string_view identity, const std::function<Held()>& make_held, session::TimePoint now);
  // A datagram of a handshake that already waits for its key: held behind the first (true), or
  // nothing waits for this handshake (false). One dropped past the bounds still answers true, and is
  // counted as result "error".
  bool hold_if_waiting(const session::Key& key, const std::function<Held()>& make_held);

  // A session established with a registry key (its identity not in the local keys), and its end.
  void session_up(session::Session& s, const std::string& identity);
  void session_down(session::Session& s, const std::string& identity);
  const std::vector<session::Session*>* sessions_of(std::string_view identity) const;
  // While the Answered callback runs: true when the registry gave no answer (an error, a body that
  // is not well-formed, a timeout), false when it answered (even an answer the cache did not keep).
  bool answer_failed() const { return answer_failed_; }
  // A live session stands on no cached answer (restored while the registry did not answer): its
  // identity is asked again after negative_ttl, so that a ban still reaches it.
  void ask_again(const std::string& identity, session::TimePoint now);

  // Expires cache entries; identities with live sessions are asked again.
  void on_tick(session::TimePoint now);
  // Pending lookups are answered as failures (shutdown).
  void shutdown();

 private:
  struct Slot {
    std::vector<Held> held;
  };
  void start(const std::string& identity);
  std::chrono::milliseconds retry_after() const;  // a failed refresh: negative_ttl, at least 1 s
  void on_answer(const std::string& identity, const upstream::ForwardResponse& response);

  Settings settings_;
  std::unique_ptr<upstream::Upstream> client_;
  metrics::Metrics& metrics_;
  Answered answered_;
  dtls::RegistryCache cache_;
  std::unordered_map<std::string, Slot> in_flight_;
  std::unordered_map<session::Key, std::string, session::KeyHash> waiting_;  // held handshake -> identity
  std::unordered_map<std::string, std::vector<session::Session*>> live_;
  // Identities with live sessions whose refresh failed (asked again after negative_ttl, so that a
  // ban still reaches them once the registry answers) or whose entry a full cache dropped (asked
  // again on the next tick); in time order.
  std::deque<std::pair<session::TimePoint, std::string>> retry_;
  std::uint64_t evictions_seen_ = 0;
  bool shut_down_ = false;
  bool answer_failed_ = false;  // see answer_failed()
  std::shared_ptr<bool> alive_;  // answers queued after shutdown() or destruction are ignored
};

}  // namespace coapgw::server
