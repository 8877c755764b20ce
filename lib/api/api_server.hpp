// coapgw::api::ApiServer — the backend API listener (listen.api, DESIGN
// "Downlink"): HTTP/1.1 with bearer tokens, on its own io_context and thread
// so a slow backend never stalls a worker. It owns the ApiService (routing,
// validation, the sleepy-device queue) and reaches devices only through the
// Downlink seam. Every resource a client can hold is bounded: connections
// (max_connections), request bytes (max_request_bytes, 413), time to send a
// request and keep-alive idle time (request_timeout); each refusal is counted
// in coapgw_api_rejected_total{reason}. Beast stays behind the pimpl.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "api/device_ref.hpp"
#include "api/downlink_queue.hpp"
#include "api/queue_snapshot.hpp"
#include "common/address.hpp"
#include "config/config.hpp"

namespace coapgw::metrics {
class Metrics;
}

namespace coapgw::api {

class Downlink;

struct ApiSettings {
  Address listen;
  std::size_t max_connections = 64;
  std::chrono::milliseconds request_timeout{10000};
  std::size_t max_request_bytes = 65536;
  DownlinkQueue::Limits queue;
  std::vector<config::ApiToken> tokens;

  // listen.api and the api: section. Call only when config.listen.api is set.
  static ApiSettings from_config(const config::Config& config);
};

class ApiServer {
 public:
  // `downlink` must outlive the server.
  ApiServer(ApiSettings settings, metrics::Metrics& metrics, Downlink& downlink);
  ~ApiServer();  // stops
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds (port 0 allowed) and starts the API thread. Returns false and sets
  // *error (if given) when the address cannot be bound. Call once.
  bool start(std::string* error);
  // The bound address with the port resolved; valid after start() succeeded.
  Address local_address() const;
  // Closes the listener and every connection, joins the thread. Idempotent.
  void stop();

  // SIGHUP, any thread: the new tokens (api.tokens followed by the re-read
  // api.tokens_file) and queue bounds apply to the next request. Nothing
  // queued is dropped.
  void reload(const config::ApiConfig& api);

  // The queue across a restart (queue_snapshot.hpp): load before start(),
  // save after stop(). `now_unix_ms` is the wall clock.
  std::optional<QueueLoad> load_queue(std::string_view bytes, std::int64_t now_unix_ms, std::string* error);
  std::string save_queue(std::int64_t now_unix_ms) const;

  // Any thread, cheap enough for every datagram: when requests are queued
  // for this device, they are sent now (posted to the API thread).
  void device_heard(const DeviceRef& device);
  bool has_queued(const std::string& device_key) const;
  // One atomic load: is anything queued for any device? Callers check it before naming the device.
  bool anything_queued() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace coapgw::api
