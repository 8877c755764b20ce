// coapgw::server::RuntimeDownlink — the api::Downlink the backend API talks to (DESIGN "Downlink"):
// it asks every worker, on its own thread, for the device's most recently heard session, then
// posts the request to the worker that holds it (DeviceLinks sends it there and answers). It also
// turns a device's datagram into ApiServer::device_heard, so queued requests go out right after.
// Group requests go to GroupRequests (its own thread and sockets, started on the first one).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "api/downlink.hpp"
#include "server/group_requests.hpp"

namespace coapgw::session {
class Session;
}

namespace coapgw::api {
class ApiServer;
}

namespace coapgw::server {

class Worker;

class RuntimeDownlink : public api::Downlink {
 public:
  // The workers must outlive every call, and be stopped only after the ApiServer.
  RuntimeDownlink(std::vector<Worker*> workers, GroupSettings groups, metrics::Metrics& metrics)
      : workers_(std::move(workers)), group_settings_(std::move(groups)), metrics_(metrics) {}

  void send(const api::DeviceRef& device, api::DownlinkRequest request, std::chrono::milliseconds timeout,
            std::function<void(api::DownlinkResult)> done) override;
  void observe(const api::DeviceRef& device, api::ObserveRequest request, std::chrono::milliseconds timeout,
               std::function<void(api::ObserveResult)> done) override;
  void cancel_observation(const api::DeviceRef& device, std::uint64_t id, std::function<void(bool)> done) override;
  void send_group(api::GroupRequest request, std::function<void(api::GroupResult)> done) override;

 private:
  // Calls `then` (on some worker's thread) with the worker whose session of `device` was heard from
  // last, or nullptr when none has one.
  void find_owner(const api::DeviceRef& device, std::function<void(Worker*)> then);

  std::vector<Worker*> workers_;
  GroupSettings group_settings_;
  metrics::Metrics& metrics_;
  std::once_flag groups_started_;
  std::unique_ptr<GroupRequests> groups_;  // made by the first group request
};

// The device a session belongs to, as the API names it: its DTLS identity, or coap:<ip>:<port>.
api::DeviceRef device_ref_of(const session::Session& s);

}  // namespace coapgw::server
