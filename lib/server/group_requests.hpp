// coapgw::server::GroupRequests — POST /v1/groups/requests (DESIGN "Downlink", RFC 7252 §8): a NON
// request to a multicast group, and every unicast answer heard within `wait`.
//
// Each group request is a client session of this object's own session::Table whose multicast
// address is the group (Session::set_addr_mcast; refcount 1 while it collects), on a UDP socket of
// its own bound to api.groups.interface (or any address) with IP_MULTICAST_IF, the hop limit
// api.groups.hops and multicast loopback on (responders on this host hear it too). The request goes
// through the exchange layer in the client role as one multi-answer registration: each answer is
// handed to the layer with the session's remote address set to its responder
// (set_addr_remote_responder, so a CON answer is ACKed to the responder), and is collected once per
// responder (GroupCollector). When `wait` has passed the registration is cancelled, the socket
// closed, the session released, and the responses returned.
//
// Bounds: api.groups.max_in_flight requests at once (beyond: refused), max_responses per request
// (beyond: dropped), `wait` at most api::max_wait, the payload at most one message (no Block1 to a
// group). Counted in coapgw_group_requests_total{outcome} and coapgw_group_responses_total{result}.
// All work runs on one thread of its own, started on the first group request.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_set>
#include <vector>

#include "api/downlink.hpp"
#include "common/address.hpp"

namespace coapgw::metrics {
class Metrics;
}

namespace coapgw::server {

struct GroupSettings {
  std::optional<Address> interface;  // the address to send from; none = any (the kernel's route)
  unsigned hops = 1;
  std::size_t max_responses = 256;
  std::size_t max_in_flight = 16;
  std::size_t max_payload = 1024;    // one message: no Block1 towards a group
};

// The responses of one group request: one per responder, at most `max`. Pure.
class GroupCollector {
 public:
  explicit GroupCollector(std::size_t max) : max_(max) {}
  // false: dropped (a second answer from the same responder, or over the bound).
  bool add(api::DownlinkAnswer answer);
  std::vector<api::DownlinkAnswer> take() { return std::move(responses_); }
  std::size_t size() const { return responses_.size(); }

 private:
  std::size_t max_;
  std::vector<api::DownlinkAnswer> responses_;
  std::unordered_set<Address, AddressHash> responders_;
};

class GroupRequests {
 public:
  GroupRequests(GroupSettings settings, metrics::Metrics& metrics);
  ~GroupRequests();  // stops the thread; requests still collecting are dropped unanswered
  GroupRequests(const GroupRequests&) = delete;
  GroupRequests& operator=(const GroupRequests&) = delete;

  // Any thread. `done` runs once, on this object's thread (or at once when refused up front).
  void send(api::GroupRequest request, std::function<void(api::GroupResult)> done);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace coapgw::server
