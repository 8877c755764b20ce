// The process-wide downlink: see downlink.hpp.
#include "server/downlink.hpp"

#include <memory>
#include <mutex>
#include <optional>

#include "server/device_links.hpp"
#include "server/dtls_tls.hpp"
#include "server/worker.hpp"

namespace coapgw::server {

api::DeviceRef device_ref_of(const session::Session& s) {
  api::DeviceRef d;
  // Devices without an authenticated identity (plain UDP, coap+tcp, coap+ws) are named by their address.
  const auto p = s.proto();
  if (p == session::Proto::udp || p == session::Proto::tcp || p == session::Proto::ws) {
    d.kind = api::DeviceRef::Kind::plain;
    d.remote = s.addr_remote();
  } else {
    d.identity = std::string(device_identity(s));
  }
  return d;
}

void RuntimeDownlink::find_owner(const api::DeviceRef& device, std::function<void(Worker*)> then) {
  // Ask every worker for the device's session; the one that heard from it last carries the request.
  struct Search {
    std::mutex m;
    std::size_t remaining;
    Worker* best = nullptr;
    std::optional<session::TimePoint> best_seen;
    api::DeviceRef device;
    std::function<void(Worker*)> then;
  };
  auto search = std::make_shared<Search>();
  search->remaining = workers_.size();
  search->device = device;
  search->then = std::move(then);
  if (workers_.empty()) return search->then(nullptr);
  for (auto* w : workers_) {
    w->post([w, search] {
      auto* s = w->device_links().find(search->device);
      std::lock_guard lock(search->m);
      if (s != nullptr && (!search->best_seen || s->last_seen() > *search->best_seen)) {
        search->best = w;
        search->best_seen = s->last_seen();
      }
      if (--search->remaining == 0) search->then(search->best);
    });
  }
}

void RuntimeDownlink::send(const api::DeviceRef& device, api::DownlinkRequest request,
                           std::chrono::milliseconds timeout, std::function<void(api::DownlinkResult)> done) {
  auto call = std::make_shared<std::pair<api::DownlinkRequest, std::function<void(api::DownlinkResult)>>>(
      std::move(request), std::move(done));
  find_owner(device, [device, call, timeout](Worker* owner) {
    if (owner == nullptr) return call->second(api::DownlinkResult{});  // no_session
    owner->post([owner, device, call, timeout] {
      owner->device_links().send(device, std::move(call->first), timeout, std::move(call->second));
    });
  });
}

void RuntimeDownlink::observe(const api::DeviceRef& device, api::ObserveRequest request,
                              std::chrono::milliseconds timeout, std::function<void(api::ObserveResult)> done) {
  auto call = std::make_shared<std::pair<api::ObserveRequest, std::function<void(api::ObserveResult)>>>(
      std::move(request), std::move(done));
  find_owner(device, [device, call, timeout](Worker* owner) {
    if (owner == nullptr) return call->second(api::ObserveResult{});  // no_session
    owner->post([owner, device, call, timeout] {
      owner->device_links().observe(device, std::move(call->first), timeout, std::move(call->second));
    });
  });
}

void RuntimeDownlink::cancel_observation(const api::DeviceRef& device, std::uint64_t id,
                                         std::function<void(bool)> done) {
  // The observation lives on one worker: every worker is asked, the answer is whether one had it.
  struct Ask {
    std::mutex m;
    std::size_t remaining;
    bool found = false;
    std::function<void(bool)> done;
  };
  auto ask = std::make_shared<Ask>();
  ask->remaining = workers_.size();
  ask->done = std::move(done);
  if (workers_.empty()) return ask->done(false);
  for (auto* w : workers_) {
    w->post([w, ask, device, id] {
      bool mine = w->device_links().cancel_observation(device, id);
      std::lock_guard lock(ask->m);
      ask->found = ask->found || mine;
      if (--ask->remaining == 0) ask->done(ask->found);
    });
  }
}

void RuntimeDownlink::send_group(api::GroupRequest request, std::function<void(api::GroupResult)> done) {
  std::call_once(groups_started_, [this] { groups_ = std::make_unique<GroupRequests>(group_settings_, metrics_); });
  groups_->send(std::move(request), std::move(done));
}

}  // namespace coapgw::server
