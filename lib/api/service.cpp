// Request handling of the backend API; see service.hpp.
#include "api/service.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include "api/answers.hpp"
#include "api/request_body.hpp"
#include "api/routes.hpp"
#include "metrics/metrics.hpp"

namespace coapgw::api {

namespace {

using metrics::DownlinkOutcome;

ApiResponse json_error(int status, std::string_view message) { return {status, render_error(message), {}}; }

}  // namespace

ApiService::ApiService(TokenSet tokens, DownlinkQueue::Limits limits, metrics::Metrics& metrics, Downlink& downlink,
                       ServiceHooks hooks)
    : tokens_(std::move(tokens)), queue_(limits), metrics_(metrics), downlink_(downlink), hooks_(std::move(hooks)) {}

ApiService::~ApiService() { *alive_ = false; }

template <typename T>
std::function<void(T)> ApiService::on_api_thread(std::function<void(T)> handler) {
  return [post = hooks_.post, alive = alive_, handler = std::move(handler)](T value) mutable {
    post([alive, handler = std::move(handler), value = std::move(value)]() mutable {
      if (*alive) handler(std::move(value));
    });
  };
}

void ApiService::bad_request(const std::string& message, Reply& reply) {
  metrics_.api_rejected(metrics::ApiReject::bad_request).Increment();
  reply(json_error(400, message));
}

void ApiService::handle(const ApiRequest& request, Reply reply) {
  // The token first, whatever the path: a 401 says nothing about devices.
  if (!tokens_.check(request.authorization)) {
    metrics_.api_rejected(metrics::ApiReject::unauthorized).Increment();
    return reply(json_error(401, "missing or unknown bearer token"));
  }
  const RouteMatch route = match_route(request.method, request.target);
  if (route.endpoint == Endpoint::not_found) return reply(json_error(404, "no such endpoint"));
  if (route.endpoint == Endpoint::method_not_allowed) {
    auto response = json_error(405, "method not allowed");
    response.allow = std::string(route.allow);
    return reply(std::move(response));
  }
  if (route.endpoint == Endpoint::group_request) return do_group(request.body, std::move(reply));
  auto device = parse_device_ref(route.device);
  if (!device.device) return bad_request(device.error, reply);
  switch (route.endpoint) {
    case Endpoint::device_request:
      return do_device_request(*device.device, request.body, std::move(reply));
    case Endpoint::request_state:
      return do_request_state(*device.device, route.id, false, std::move(reply));
    case Endpoint::request_cancel:
      return do_request_state(*device.device, route.id, true, std::move(reply));
    case Endpoint::observe:
      return do_observe(*device.device, request.body, std::move(reply));
    case Endpoint::observe_cancel:
      return do_observe_cancel(*device.device, route.id, std::move(reply));
    default:
      return reply(json_error(404, "no such endpoint"));
  }
}

void ApiService::do_device_request(const DeviceRef& device, const std::string& body, Reply reply) {
  auto spec = parse_device_request(body);
  if (!spec.value) return bad_request(spec.error, reply);
  const auto timeout = spec.value->timeout;
  const auto queue_for = spec.value->queue_for;
  DownlinkRequest copy = spec.value->request;  // kept in case it must be queued
  downlink_.send(device, std::move(spec.value->request), timeout,
                 on_api_thread<DownlinkResult>([this, device, copy = std::move(copy), timeout, queue_for,
                                                reply = std::move(reply)](DownlinkResult result) mutable {
                   on_device_answer(device, std::move(copy), timeout, queue_for, std::move(result), std::move(reply));
                 }));
}

void ApiService::on_device_answer(const DeviceRef& device, DownlinkRequest request, std::chrono::milliseconds timeout,
                                  std::optional<std::chrono::milliseconds> queue_for, DownlinkResult result,
                                  Reply reply) {
  switch (result.status) {
    case DownlinkStatus::answered:
      metrics_.downlink_requests(DownlinkOutcome::answered).Increment();
      return reply({200, render_answer(result.answer), {}});
    case DownlinkStatus::timeout:
      metrics_.downlink_requests(DownlinkOutcome::timeout).Increment();
      return reply(json_error(504, "no answer from the device within the timeout"));
    case DownlinkStatus::rejected:
      metrics_.downlink_requests(DownlinkOutcome::rejected).Increment();
      return reply(json_error(503, result.reason.empty() ? "the gateway refused the request" : result.reason));
    case DownlinkStatus::no_session:
      break;
  }
  if (!queue_for) {
    metrics_.downlink_requests(DownlinkOutcome::no_session).Increment();
    return reply(json_error(404, "no reachable session for this device"));
  }
  const auto pushed = queue_.push(device, std::move(request), timeout, *queue_for, hooks_.now());
  if (pushed.error) {
    metrics_.downlink_requests(DownlinkOutcome::rejected).Increment();
    return reply(json_error(429, *pushed.error == DownlinkQueue::PushError::device_full
                                     ? "the queue of this device is full (api.max_queued_per_device)"
                                     : "the downlink queue is full (api.max_queued)"));
  }
  metrics_.downlink_requests(DownlinkOutcome::queued).Increment();
  queue_changed();
  reply({202, render_queued(pushed.id), {}});
}

void ApiService::device_heard(const DeviceRef& device) {
  auto taken = queue_.take(device.key(), hooks_.now());
  if (taken.empty()) return;
  queue_changed();
  for (auto& entry : taken) {
    const std::uint64_t id = entry.id;
    downlink_.send(entry.device, std::move(entry.request), entry.timeout,
                   on_api_thread<DownlinkResult>(
                       [this, id](DownlinkResult result) { on_queued_answer(id, std::move(result)); }));
  }
}

void ApiService::on_queued_answer(std::uint64_t id, DownlinkResult result) {
  const auto status = result.status;
  queue_.finish(id, std::move(result), hooks_.now());
  const QueuedRequest* entry = queue_.find(id);
  if (entry != nullptr) {
    switch (entry->state) {
      case QueuedState::answered:
        metrics_.downlink_requests(DownlinkOutcome::answered).Increment();
        break;
      case QueuedState::expired:
        metrics_.downlink_requests(status == DownlinkStatus::timeout    ? DownlinkOutcome::timeout
                                   : status == DownlinkStatus::rejected ? DownlinkOutcome::rejected
                                                                        : DownlinkOutcome::expired)
            .Increment();
        break;
      default:
        break;  // queued again: the device went away before the send
    }
  }
  queue_changed();
}

void ApiService::do_request_state(const DeviceRef& device, std::uint64_t id, bool cancel, Reply reply) {
  const QueuedRequest* entry = queue_.find(id);
  // Another device's id reads as unknown: ids say nothing across devices.
  if (entry == nullptr || !(entry->device == device)) return reply(json_error(404, "no such request"));
  if (cancel) {
    const auto result = queue_.cancel(id, hooks_.now());
    if (result == DownlinkQueue::CancelResult::not_queued) {
      auto response = ApiResponse{409, render_record(*entry), {}};
      return reply(std::move(response));
    }
    metrics_.downlink_requests(DownlinkOutcome::cancelled).Increment();
    queue_changed();
    entry = queue_.find(id);
    if (entry == nullptr) return reply(json_error(404, "no such request"));
  }
  reply({200, render_record(*entry), {}});
}

void ApiService::do_observe(const DeviceRef& device, const std::string& body, Reply reply) {
  auto spec = parse_observe_request(body);
  if (!spec.value) return bad_request(spec.error, reply);
  downlink_.observe(device, std::move(spec.value->request), spec.value->timeout,
                    on_api_thread<ObserveResult>([reply = std::move(reply)](ObserveResult result) {
                      switch (result.status) {
                        case DownlinkStatus::answered:
                          return reply({200, render_observation(result), {}});
                        case DownlinkStatus::no_session:
                          return reply(json_error(404, "no reachable session for this device"));
                        case DownlinkStatus::timeout:
                          return reply(json_error(504, "no answer from the device within the timeout"));
                        case DownlinkStatus::rejected:
                          return reply(json_error(503, result.reason));
                      }
                    }));
}

void ApiService::do_observe_cancel(const DeviceRef& device, std::uint64_t id, Reply reply) {
  downlink_.cancel_observation(device, id, on_api_thread<bool>([id, reply = std::move(reply)](bool found) {
                                 if (!found) return reply(json_error(404, "no such observation"));
                                 reply({200, "{\"id\":\"" + std::to_string(id) + "\",\"state\":\"cancelled\"}", {}});
                               }));
}

void ApiService::do_group(const std::string& body, Reply reply) {
  auto request = parse_group_request(body);
  if (!request.value) return bad_request(request.error, reply);
  downlink_.send_group(std::move(*request.value),
                       on_api_thread<GroupResult>([reply = std::move(reply)](GroupResult result) {
                         if (!result.ok) return reply(json_error(503, result.reason));
                         reply({200, render_group(result), {}});
                       }));
}

void ApiService::expire() {
  const std::size_t expired = queue_.expire(hooks_.now());
  if (expired > 0) metrics_.downlink_requests(DownlinkOutcome::expired).Increment(static_cast<double>(expired));
  queue_changed();
}

std::string ApiService::save_queue(std::int64_t now_unix_ms) const {
  return api::save_queue(queue_, {hooks_.now(), now_unix_ms});
}

std::optional<QueueLoad> ApiService::load_queue(std::string_view bytes, std::int64_t now_unix_ms,
                                                std::string* error) {
  auto load = api::load_queue(queue_, bytes, {hooks_.now(), now_unix_ms}, error);
  if (!load) return load;
  // Dropped ones were queued (or readable) and are gone now: counted as expired.
  if (load->dropped > 0)
    metrics_.downlink_requests(DownlinkOutcome::expired).Increment(static_cast<double>(load->dropped));
  expire();  // those that expired while we were down; publishes the queued devices and arms the timer
  return load;
}

void ApiService::queue_changed() {
  metrics_.downlink_queued().Set(static_cast<double>(queue_.queued()));
  if (auto next = queue_.next_deadline(); next && hooks_.wake_at) hooks_.wake_at(*next);
  if (hooks_.queued_devices) hooks_.queued_devices(queue_.queued_devices());
}

}  // namespace coapgw::api
