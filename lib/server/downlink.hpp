// coapgw::server::RuntimeDownlink — the api::Downlink the backend API talks to (DESIGN "Downlink"):
// it asks every worker, on its own thread, for the device's most recently heard session, then
// posts the request to the worker that holds it (DeviceLinks sends it there and answers). It also
// turns a device's datagram into ApiServer::device_heard, so queued requests go out right after.
// Group requests are not implemented yet: they are refused (`rejected`).
#pragma once

#include <functional>
#include <vector>

#include "api/downlink.hpp"

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
  explicit RuntimeDownlink(std::vector<Worker*> workers) : workers_(std::move(workers)) {}

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
};

// The device a session belongs to, as the API names it: its DTLS identity, or coap:<ip>:<port>.
api::DeviceRef device_ref_of(const session::Session& s);

}  // namespace coapgw::server
