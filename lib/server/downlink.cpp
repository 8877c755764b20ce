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
  if (s.proto() == session::Proto::udp) {
    d.kind = api::DeviceRef::Kind::plain;
    d.remote = s.addr_remote();
  } else {
    d.identity = std::string(device_identity(s));
  }
  return d;
}

void RuntimeDownlink::send(const api::DeviceRef& device, api::DownlinkRequest request,
                           std::chrono::milliseconds timeout, std::function<void(api::DownlinkResult)> done) {
  // Ask every worker for the device's session; the most recently heard one carries the request.
  struct Search {
    std::mutex m;
    std::size_t remaining;
    Worker* best = nullptr;
    std::optional<session::TimePoint> best_seen;
    api::DeviceRef device;
    api::DownlinkRequest request;
    std::chrono::milliseconds timeout;
    std::function<void(api::DownlinkResult)> done;
  };
  auto search = std::make_shared<Search>();
  search->remaining = workers_.size();
  search->device = device;
  search->request = std::move(request);
  search->timeout = timeout;
  search->done = std::move(done);
  if (workers_.empty()) return search->done(api::DownlinkResult{});
  for (auto* w : workers_) {
    w->post([w, search] {
      auto* s = w->device_links().find(search->device);
      std::lock_guard lock(search->m);
      if (s != nullptr && (!search->best_seen || s->last_seen() > *search->best_seen)) {
        search->best = w;
        search->best_seen = s->last_seen();
      }
      if (--search->remaining != 0) return;
      if (search->best == nullptr) return search->done(api::DownlinkResult{});  // no_session
      auto* owner = search->best;
      owner->post([owner, search] {
        owner->device_links().send(search->device, std::move(search->request), search->timeout,
                                   std::move(search->done));
      });
    });
  }
}

void RuntimeDownlink::observe(const api::DeviceRef&, api::ObserveRequest, std::chrono::milliseconds,
                              std::function<void(api::ObserveResult)> done) {
  api::ObserveResult r;
  r.status = api::DownlinkStatus::rejected;
  r.reason = "observations are not implemented yet";
  done(std::move(r));
}

void RuntimeDownlink::cancel_observation(const api::DeviceRef&, std::uint64_t, std::function<void(bool)> done) {
  done(false);
}

void RuntimeDownlink::send_group(api::GroupRequest, std::function<void(api::GroupResult)> done) {
  api::GroupResult r;
  r.ok = false;
  r.reason = "group requests are not implemented yet";
  done(std::move(r));
}

}  // namespace coapgw::server
