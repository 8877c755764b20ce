// Listener, accept loop, expiry timer and lifecycle of the backend API; see
// api_server.hpp. Requests are handled by ApiConnection and ApiService.
#include "api/api_server.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <thread>

#include <prometheus/counter.h>

#include "api/api_connection.hpp"
#include "common/log.hpp"
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
  Impl(ApiSettings settings, metrics::Metrics& metrics, Downlink& downlink) : shared_(settings, metrics) {
    gate_ = std::make_shared<PostGate>(ioc_);
    ServiceHooks hooks;
    hooks.post = [gate = gate_](std::function<void()> fn) { gate->post(std::move(fn)); };
    hooks.now = [] { return Clock::now(); };
    hooks.wake_at = [this](TimePoint at) { arm_expiry(at); };
    hooks.queued_devices = [this](DeviceKeys keys) { queued_devices_.store(std::move(keys)); };
    shared_.service = std::make_unique<ApiService>(TokenSet(settings.tokens), settings.queue, metrics, downlink,
                                                   std::move(hooks));
  }

  bool start(std::string* error) {
    const auto fail = [&](const std::string& what) {
      if (error) *error = "api listener " + shared_.settings.listen.to_string() + ": " + what;
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      return false;
    };
    if (started_) return fail("already started");
    tcp::endpoint endpoint;
    const std::size_t len = shared_.settings.listen.to_sockaddr(endpoint.data(), endpoint.capacity());
    if (len == 0) return fail("no address");
    endpoint.resize(len);
    boost::system::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(tcp::socket::max_listen_connections, ec);
    const tcp::endpoint bound = ec ? tcp::endpoint{} : acceptor_.local_endpoint(ec);
    if (ec) return fail(ec.message());
    local_ = Address::from_sockaddr(bound.data());
    started_ = true;
    accept_next();
    thread_ = std::thread([this] {
      log::set_thread_worker(-1);
      ioc_.run();
    });
    return true;
  }

  void stop() {
    if (!thread_.joinable()) return;
    gate_->close();  // late Downlink answers are dropped from now on
    boost::asio::post(ioc_, [this] {
      shared_.stopping = true;
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      retry_timer_.cancel();
      expiry_timer_.cancel();
      std::vector<std::shared_ptr<ApiConnection>> open;
      for (auto& [id, weak] : shared_.connections)
        if (auto c = weak.lock()) open.push_back(std::move(c));
      for (auto& c : open) c->abort();
    });
    thread_.join();
  }

  void reload(const config::ApiConfig& api) {
    gate_->post([this, tokens = TokenSet(api.tokens),
                 limits = DownlinkQueue::Limits{api.max_queued_per_device, api.max_queued}]() mutable {
      shared_.service->set_tokens(std::move(tokens));
      shared_.service->set_limits(limits);
    });
  }

  bool has_queued(const std::string& key) const {
    const DeviceKeys keys = queued_devices_.load();
    return keys && keys->count(key) != 0;
  }

  void device_heard(const DeviceRef& device) {
    if (!has_queued(device.key())) return;
    gate_->post([this, device] { shared_.service->device_heard(device); });
  }

  Address local_address() const { return local_; }

 private:
  void arm_expiry(TimePoint at) {
    if (shared_.stopping) return;
    expiry_timer_.expires_at(at);
    expiry_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec && !shared_.stopping) shared_.service->expire();
    });
  }

  void accept_next() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (shared_.stopping || ec == boost::asio::error::operation_aborted) return;
      if (ec) return back_off(ec);
      admit(std::move(socket));
      accept_next();
    });
  }

  // EMFILE and friends: wait a little instead of spinning on the error.
  void back_off(const boost::system::error_code& ec) {
    if (auto suppressed = accept_log_.allow(std::chrono::steady_clock::now()))
      log::warn("api: accept failed: " + ec.message() +
                (*suppressed ? " (" + std::to_string(*suppressed) + " more suppressed)" : ""));
    retry_timer_.expires_after(std::chrono::milliseconds(100));
    retry_timer_.async_wait([this](boost::system::error_code wait_ec) {
      if (!wait_ec && !shared_.stopping) accept_next();
    });
  }

  void admit(tcp::socket socket) {
    if (shared_.connections.size() >= shared_.settings.max_connections) {
      shared_.metrics.api_rejected(metrics::ApiReject::connection_limit).Increment();
      boost::system::error_code ignored;
      socket.close(ignored);
      return;
    }
    const std::uint64_t id = shared_.next_connection_id++;
    auto connection = std::make_shared<ApiConnection>(shared_, id, std::move(socket));
    shared_.connections.emplace(id, connection);
    connection->start();
  }

  // Connections (owned by handlers in ioc_) refer to shared_: declared first, destroyed last.
  ApiShared shared_;
  boost::asio::io_context ioc_{1};
  std::shared_ptr<PostGate> gate_;
  tcp::acceptor acceptor_{ioc_};
  boost::asio::steady_timer retry_timer_{ioc_};
  boost::asio::steady_timer expiry_timer_{ioc_};
  std::atomic<DeviceKeys> queued_devices_;
  log::RateLimited accept_log_;
  Address local_;
  bool started_ = false;
  std::thread thread_;
};

ApiServer::ApiServer(ApiSettings settings, metrics::Metrics& metrics, Downlink& downlink)
    : impl_(std::make_unique<Impl>(std::move(settings), metrics, downlink)) {}
ApiServer::~ApiServer() { stop(); }
bool ApiServer::start(std::string* error) { return impl_->start(error); }
Address ApiServer::local_address() const { return impl_->local_address(); }
void ApiServer::stop() { impl_->stop(); }
void ApiServer::reload(const config::ApiConfig& api) { impl_->reload(api); }
void ApiServer::device_heard(const DeviceRef& device) { impl_->device_heard(device); }
bool ApiServer::has_queued(const std::string& device_key) const { return impl_->has_queued(device_key); }

}  // namespace coapgw::api
