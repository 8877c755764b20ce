// coapgw::server::ObserveRelays — Observe (RFC 7641) relayed through coap:// routes, per worker: a
// device's GET/FETCH with Observe=0 is forwarded with an upstream::ObserveHook; when the upstream's
// first answer registered it (it carries Observe, relayed to the device with the answer), each
// later notification is sent to the device over its session as a NON with the device's token and
// the upstream's Observe number, in order (exchange::ObserveOrder drops stale ones, §3.4).
//
// A relay ends, and the upstream registration is forgotten (its next CON notification is answered
// RST, §3.6), when the device deregisters (a request with Observe=1, or any new request, with the
// relay's token), answers a notification with RST, or its session closes (idle timeout included);
// the upstream ends it with an answer without Observe or an error (relayed, then ended). A relay
// that ends before the upstream's first answer marks its hook abandoned: the upstream forgets the
// registration at that answer. At most max_observe_relays per worker and
// max_observe_relays_per_session per device session (so one device cannot hold a route's
// max_exchanges): beyond either, the request is forwarded without Observe, so the device gets a
// plain answer (§3.1: not registered), counted in coapgw_observe_relays_refused_total{bound}.
// Gauge coapgw_observe_relays, counter coapgw_relayed_notifications_total.
//
// No I/O: sending is injected (the worker seals and sends), time is passed in; one worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "coap/message.hpp"
#include "exchange/observe_order.hpp"
#include "upstream/forward.hpp"

namespace coapgw::session {
class Session;
}
namespace coapgw::metrics {
class Metrics;
}

namespace coapgw::server {

inline constexpr std::size_t max_observe_relays = 1024;  // per worker
inline constexpr std::size_t max_observe_relays_per_session = 8;  // per device session
inline constexpr std::size_t relay_mids_kept = 4;        // notification ids an RST may name

class ObserveRelays {
 public:
  using Send = std::function<void(session::Session&, std::span<const std::byte>)>;
  using Now = std::function<exchange::TimePoint()>;

  ObserveRelays(Send send, Now now, metrics::Metrics& metrics, std::size_t max_message_size,
                std::size_t max_relays = max_observe_relays,
                std::size_t max_per_session = max_observe_relays_per_session);
  ~ObserveRelays();
  ObserveRelays(const ObserveRelays&) = delete;
  ObserveRelays& operator=(const ObserveRelays&) = delete;

  // A device request about to be forwarded. A relay with its token ends (deregistration, or the
  // token reused); a GET/FETCH with Observe=0 gets a hook to forward with (nullptr: not relayed).
  std::shared_ptr<upstream::ObserveHook> on_request(session::Session& s, const coap::MessageView& m);
  // The forward's first answer went to the device: the relay lives on when the upstream registered.
  void on_first_answer(session::Session& s, std::span<const std::byte> token, const upstream::ForwardResponse& r);
  // An RST from the device: true when it named one of our notifications (that relay ends).
  bool on_rst(session::Session& s, std::uint16_t message_id);
  // The session closed: its relays end.
  void closed(const session::Session& s);

  std::size_t size() const { return relays_.size(); }

 private:
  struct Relay;
  using Key = std::pair<std::uint64_t, std::string>;  // session id, token
  struct KeyHash {
    std::size_t operator()(const Key& k) const { return std::hash<std::string>()(k.second) ^ k.first; }
  };
  void notify(const Key& key, upstream::ForwardResponse r);
  void end(const Key& key, bool cancel_upstream);

  Send send_;
  Now now_;
  metrics::Metrics& metrics_;
  std::size_t max_message_size_;
  std::size_t max_relays_;
  std::size_t max_per_session_;
  std::unordered_map<std::uint64_t, std::size_t> per_session_;  // session id -> its relays
  std::unordered_map<Key, std::unique_ptr<Relay>, KeyHash> relays_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // hooks may outlive this
};

}  // namespace coapgw::server
