// coapgw::api::ApiService — what the backend API does with one authenticated
// HTTP request: token check, routing, body validation, the call into the
// Downlink seam, the sleepy-device queue, and the status code and JSON of the
// answer (DESIGN "Downlink"). No sockets: the listener hands it a request and
// a reply callback, tests call it directly.
//
// Threading: every method runs on one thread (the API thread). Downlink
// results arrive on any thread and are brought back with the injected `post`.
// Time comes from the injected `now`; `wake_at` asks the owner to call
// expire() at that time (the queue's next expiry).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "api/downlink.hpp"
#include "api/downlink_queue.hpp"
#include "api/queue_snapshot.hpp"
#include "api/tokens.hpp"

namespace coapgw::metrics {
class Metrics;
}

namespace coapgw::api {

struct ApiRequest {
  std::string method;         // "POST"
  std::string target;         // "/v1/devices/abc/requests"
  std::string authorization;  // the Authorization header, "" when absent
  std::string body;
};

struct ApiResponse {
  int status = 200;
  std::string body;           // JSON
  std::string allow;          // 405: the Allow header
};

using Reply = std::function<void(ApiResponse)>;

struct ServiceHooks {
  std::function<void(std::function<void()>)> post;  // run on the API thread
  std::function<TimePoint()> now;
  std::function<void(TimePoint)> wake_at;           // call expire() then (replaces the previous wish)
  // The device keys with queued requests changed (for a cheap "anything
  // queued for this device?" check on the workers' side).
  std::function<void(std::shared_ptr<const std::unordered_set<std::string>>)> queued_devices;
};

class ApiService {
 public:
  ApiService(TokenSet tokens, DownlinkQueue::Limits limits, metrics::Metrics& metrics, Downlink& downlink,
             ServiceHooks hooks);
  ~ApiService();
  ApiService(const ApiService&) = delete;
  ApiService& operator=(const ApiService&) = delete;

  void handle(const ApiRequest& request, Reply reply);
  void set_tokens(TokenSet tokens) { tokens_ = std::move(tokens); }
  void set_limits(DownlinkQueue::Limits limits) { queue_.set_limits(limits); }
  // The device was heard from: send what is queued for it.
  void device_heard(const DeviceRef& device);
  // Expires queued requests that are due (see ServiceHooks::wake_at).
  void expire();

  const DownlinkQueue& queue() const { return queue_; }
  // Across a restart (queue_snapshot.hpp); call while no request is handled
  // (before the listener starts, after it stopped).
  std::string save_queue(std::int64_t now_unix_ms) const;
  std::optional<QueueLoad> load_queue(std::string_view bytes, std::int64_t now_unix_ms, std::string* error);

 private:
  void do_device_request(const DeviceRef& device, const std::string& body, Reply reply);
  void on_device_answer(const DeviceRef& device, DownlinkRequest request, std::chrono::milliseconds timeout,
                        std::optional<std::chrono::milliseconds> queue_for, DownlinkResult result, Reply reply);
  void on_queued_answer(std::uint64_t id, DownlinkResult result);
  void do_request_state(const DeviceRef& device, std::uint64_t id, bool cancel, Reply reply);
  void do_observe(const DeviceRef& device, const std::string& body, Reply reply);
  void do_observe_cancel(const DeviceRef& device, std::uint64_t id, Reply reply);
  void do_group(const std::string& body, Reply reply);
  void queue_changed();
  void bad_request(const std::string& message, Reply& reply);
  // Wraps a Downlink callback so that it runs on the API thread, and never
  // after this service is gone.
  template <typename T>
  std::function<void(T)> on_api_thread(std::function<void(T)> handler);

  TokenSet tokens_;
  DownlinkQueue queue_;
  metrics::Metrics& metrics_;
  Downlink& downlink_;
  ServiceHooks hooks_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace coapgw::api
