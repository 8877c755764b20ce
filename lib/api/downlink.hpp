// coapgw::api::Downlink — the seam between the backend API and the workers
// that own device sessions. The API validates what a backend asks, then calls
// this interface; the runtime implements it by posting to the worker that
// holds the device's session (the message layer sends the CoAP request in the
// client role there). Tests implement it with a fake.
//
// Contract for implementations: every call returns at once; `done` is called
// exactly once, on any thread, possibly before the call returns. The API
// carries the result back onto its own thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "api/device_ref.hpp"
#include "common/address.hpp"

namespace coapgw::api {

// One CoAP request as the backend described it, validated.
struct DownlinkRequest {
  std::uint8_t method = 1;                 // CoAP code 0.01 GET .. 0.07 iPATCH
  std::string path;                        // as given ("/sensors/temp"), for display
  std::vector<std::string> uri_path;       // decoded segments: one Uri-Path option each
  std::vector<std::string> uri_query;      // decoded parts: one Uri-Query option each
  std::optional<std::uint16_t> content_format;
  std::string payload;                     // bytes
  bool confirmable = true;
};

// The device's response.
struct DownlinkAnswer {
  std::uint8_t code = 0;                   // class << 5 | detail: 2.05 = 69
  std::optional<std::uint16_t> content_format;
  std::string payload;
  std::uint64_t session = 0;               // id of the session it came over
  Address remote;                          // the device's address
};

enum class DownlinkStatus : std::uint8_t {
  answered,    // `answer` holds the response
  no_session,  // no reachable session for the device (404, or queued with queue_for)
  timeout,     // sent, no answer within the timeout (504)
  rejected,    // refused by the runtime (bounds, shutting down, message too large); `reason` says why
};

struct DownlinkResult {
  DownlinkStatus status = DownlinkStatus::no_session;
  DownlinkAnswer answer;   // status == answered
  std::string reason;      // status == rejected: for the backend, no secrets
};

// POST /v1/devices/{identity}/observations
struct ObserveRequest {
  std::vector<std::string> uri_path, uri_query;
  std::string path;     // as given
  std::string notify;   // http(s) URL each notification is POSTed to
};

struct ObserveResult {
  DownlinkStatus status = DownlinkStatus::no_session;  // answered = registered
  std::uint64_t id = 0;                                 // answered: the observation id
  DownlinkAnswer first;                                 // answered: the registration response
  std::string reason;
};

// POST /v1/groups/requests
struct GroupRequest {
  Address group;               // multicast address and port
  DownlinkRequest request;     // confirmable is always false (RFC 7252 §8.1)
  std::chrono::milliseconds wait{2000};
};

struct GroupResult {
  bool ok = true;              // false: rejected; `reason` says why
  std::string reason;
  std::vector<DownlinkAnswer> responses;  // one per unicast response heard within `wait`
};

class Downlink {
 public:
  virtual ~Downlink() = default;

  // Sends `request` to the device over its most recently heard session and
  // waits up to `timeout` for the response (CON retransmissions included).
  virtual void send(const DeviceRef& device, DownlinkRequest request, std::chrono::milliseconds timeout,
                    std::function<void(DownlinkResult)> done) = 0;

  // Registers an observation (GET with Observe=0) that lives as long as the
  // device's session; notifications go to request.notify.
  virtual void observe(const DeviceRef& device, ObserveRequest request, std::chrono::milliseconds timeout,
                       std::function<void(ObserveResult)> done) = 0;

  // Cancels observation `id` of `device`; done(false) when there is none.
  virtual void cancel_observation(const DeviceRef& device, std::uint64_t id, std::function<void(bool)> done) = 0;

  // A NON multicast request; collects unicast answers for request.wait.
  virtual void send_group(GroupRequest request, std::function<void(GroupResult)> done) = 0;
};

}  // namespace coapgw::api
