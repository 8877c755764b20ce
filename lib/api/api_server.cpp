// The backend API's listener, expiry timer and lifecycle; see api_server.hpp.
// Requests are handled by ApiConnection and ApiService.
#include "api/api_server.hpp"

#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <mutex>

#include <prometheus/counter.h>

#include "api/api_connection.hpp"
#include "api/http_listener.hpp"
#include "metrics/metrics.hpp"

namespace coapgw::api {

using boost::asio::ip::tcp;
using DeviceKeys = std::shared_ptr<const std::unordered_set<std::string>>;

ApiSettings ApiSettings::from_config(const config::Config& config) {
  ApiSettings s;
  if (config.listen.api) s.listen = *config.listen.api;
  s.max_connections = config.api.max_connections;
  s.request_timeout = config.api.request_timeout;
  s.max_request_bytes = config.api.max_request_bytes;
  s.queue = {config.api.max_queued_per_device, config.api.max_queued};
  s.tokens = config.api.tokens;
  return s;
}

class ApiServer::Impl {
 public:
  Impl(ApiSettings settings, metrics::Metrics& metrics, Downlink& downlink)
      : shared_(settings, metrics),
        listener_(
            "api", settings.max_connections,
            [this](tcp::socket socket, std::unique_ptr<HttpListener::Slot> slot) {
              auto connection = std::make_shared<ApiConnection>(shared_, std::move(slot), std::move(socket));
              connection->start();
              return connection;
            },
            [&metrics] { metrics.api_rejected(metrics::ApiReject::connection_limit).Increment(); }) {
    gate_ = std::make_shared<PostGate>(listener_.context());
    ServiceHooks hooks;
    hooks.post = [gate = gate_](std::function<void()> fn) { gate->post(std::move(fn)); };
    hooks.now = [] { return Clock::now(); };
    hooks.wake_at = [this](TimePoint at) { arm_expiry(at); };
    hooks.queued_devices = [this](DeviceKeys keys) {
      const bool any = keys && !keys->empty();
      std::lock_guard lock(queued_mutex_);
      queued_devices_ = std::move(keys);
      any_queued_.store(any, std::memory_order_release);
    };
    shared_.service = std::make_unique<ApiService>(TokenSet(settings.tokens), settings.queue, metrics, downlink,
                                                   std::move(hooks));
  }

  bool start(std::string* error) { return listener_.start(shared_.settings.listen, error); }

  void stop() {
    gate_->close();  // late Downlink answers are dropped from now on
    listener_.stop([this] { expiry_timer_.cancel(); });
  }

  void reload(const config::ApiConfig& api) {
    gate_->post([this, tokens = TokenSet(api.tokens),
                 limits = DownlinkQueue::Limits{api.max_queued_per_device, api.max_queued}]() mutable {
      shared_.service->set_tokens(std::move(tokens));
      shared_.service->set_limits(limits);
    });
  }

  // Nothing queued anywhere (the usual case) costs one atomic load; else the
  // lock is held only to copy the pointer to the immutable key set.
  bool has_queued(const std::string& key) const {
    if (!any_queued_.load(std::memory_order_acquire)) return false;
    DeviceKeys keys;
    {
      std::lock_guard lock(queued_mutex_);
      keys = queued_devices_;
    }
    return keys && keys->count(key) != 0;
  }

  bool anything_queued() const { return any_queued_.load(std::memory_order_acquire); }

  void device_heard(const DeviceRef& device) {
    if (!has_queued(device.key())) return;
    gate_->post([this, device] { shared_.service->device_heard(device); });
  }

  Address local_address() const { return listener_.local_address(); }
  ApiService& service() { return *shared_.service; }

 private:
  void arm_expiry(TimePoint at) {
    if (listener_.stopping()) return;
    expiry_timer_.expires_at(at);
    expiry_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec && !listener_.stopping()) shared_.service->expire();
    });
  }

  // Connections (owned by handlers in the listener's io_context) refer to
  // shared_: declared first, destroyed last.
  ApiShared shared_;
  HttpListener listener_;
  std::shared_ptr<PostGate> gate_;
  boost::asio::steady_timer expiry_timer_{listener_.context()};
  std::atomic<bool> any_queued_{false};
  mutable std::mutex queued_mutex_;
  DeviceKeys queued_devices_;  // guarded by queued_mutex_
};

ApiServer::ApiServer(ApiSettings settings, metrics::Metrics& metrics, Downlink& downlink)
    : impl_(std::make_unique<Impl>(std::move(settings), metrics, downlink)) {}
ApiServer::~ApiServer() { stop(); }
bool ApiServer::start(std::string* error) { return impl_->start(error); }
Address ApiServer::local_address() const { return impl_->local_address(); }
void ApiServer::stop() { impl_->stop(); }
void ApiServer::reload(const config::ApiConfig& api) { impl_->reload(api); }
void ApiServer::device_heard(const DeviceRef& device) { impl_->device_heard(device); }
bool ApiServer::anything_queued() const { return impl_->anything_queued(); }
std::optional<QueueLoad> ApiServer::load_queue(std::string_view bytes, std::int64_t now_unix_ms,
                                               std::string* error) {
  return impl_->service().load_queue(bytes, now_unix_ms, error);
}
std::string ApiServer::save_queue(std::int64_t now_unix_ms) const {
  return impl_->service().save_queue(now_unix_ms);
}
bool ApiServer::has_queued(const std::string& device_key) const { return impl_->has_queued(device_key); }

}  // namespace coapgw::api
