// Listener, accept loop and lifecycle of the admin server; request handling
// lives in http_connection.cpp.
#include "admin/admin_server.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstring>
#include <thread>

#include "admin/http_connection.hpp"
#include "common/log.hpp"
#include "metrics/metrics.hpp"

#include <prometheus/counter.h>

namespace coapgw::admin {

using boost::asio::ip::tcp;

class AdminServer::Impl {
 public:
  Impl(AdminSettings settings, metrics::Metrics& metrics, SessionLister lister)
      : shared_(std::move(settings), metrics, std::move(lister)) {
    shared_.gate = std::make_shared<CallbackGate>(ioc_);
  }

  bool start(std::string* error) {
    if (started_) {
      if (error) *error = "admin server already started";
      return false;
    }
    tcp::endpoint endpoint;
    const std::size_t len = shared_.settings.listen.to_sockaddr(endpoint.data(), endpoint.capacity());
    if (len == 0) {
      if (error) *error = "admin listen address is not set";
      return false;
    }
    endpoint.resize(len);
    boost::system::error_code ec;
    const auto fail = [&](const char* what) {
      if (error)
        *error = std::string("admin listener ") + shared_.settings.listen.to_string() + ": " +
                 what + ": " + ec.message();
      acceptor_.close(ec);
      return false;
    };
    acceptor_.open(endpoint.protocol(), ec);
    if (ec) return fail("open");
    acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (ec) return fail("SO_REUSEADDR");
    acceptor_.bind(endpoint, ec);
    if (ec) return fail("bind");
    acceptor_.listen(tcp::socket::max_listen_connections, ec);
    if (ec) return fail("listen");
    const tcp::endpoint bound = acceptor_.local_endpoint(ec);
    if (ec) return fail("local address");
    local_ = Address::from_sockaddr(bound.data());
    started_ = true;
    do_accept();
    thread_ = std::thread([this] {
      log::set_thread_worker(-1);
      ioc_.run();
    });
    return true;
  }

  void stop() {
    if (!thread_.joinable()) return;
    shared_.gate->close();  // late lister answers are dropped from now on
    boost::asio::post(ioc_, [this] {
      shared_.stopping = true;
      boost::system::error_code ec;
      acceptor_.close(ec);
      retry_timer_.cancel();
      // Copy first: aborting may destroy a connection, which erases itself.
      std::vector<std::shared_ptr<HttpConnection>> live;
      for (auto& [id, weak] : shared_.connections)
        if (auto c = weak.lock()) live.push_back(std::move(c));
      for (auto& c : live) c->abort();
    });
    // Every pending operation now completes with an error and nothing new is
    // started, so run() returns once they have drained.
    thread_.join();
  }

  Address local_address() const { return local_; }
  ServerShared& shared() { return shared_; }
  const ServerShared& shared() const { return shared_; }

 private:
  void do_accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      on_accept(ec, std::move(socket));
    });
  }

  void on_accept(boost::system::error_code ec, tcp::socket socket) {
    if (shared_.stopping || ec == boost::asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and friends: back off instead of spinning on the error.
      if (auto suppressed = accept_log_.allow(std::chrono::steady_clock::now()))
        log::warn("admin: accept failed: " + ec.message() +
                  (*suppressed ? " (" + std::to_string(*suppressed) + " more suppressed)" : ""));
      retry_timer_.expires_after(std::chrono::milliseconds(100));
      retry_timer_.async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec && !shared_.stopping) do_accept();
      });
      return;
    }
    if (shared_.connections.size() >= shared_.settings.max_connections) {
      shared_.rejected_connections.fetch_add(1, std::memory_order_relaxed);
      shared_.metrics.admin_rejected(metrics::AdminReject::connection_limit).Increment();
      boost::system::error_code close_ec;
      socket.close(close_ec);
    } else {
      const std::uint64_t id = shared_.next_connection_id++;
      auto connection = std::make_shared<HttpConnection>(shared_, id, std::move(socket));
      shared_.connections.emplace(id, connection);
      connection->start();
    }
    do_accept();
  }

  // Order matters: connections (owned by handlers in ioc_) refer to shared_,
  // so shared_ is declared first and destroyed last.
  ServerShared shared_;
  boost::asio::io_context ioc_{1};
  tcp::acceptor acceptor_{ioc_};
  boost::asio::steady_timer retry_timer_{ioc_};
  log::RateLimited accept_log_;
  Address local_;
  bool started_ = false;
  std::thread thread_;
};

AdminServer::AdminServer(AdminSettings settings, metrics::Metrics& metrics, SessionLister lister)
    : impl_(std::make_unique<Impl>(std::move(settings), metrics, std::move(lister))) {}

AdminServer::~AdminServer() { stop(); }

bool AdminServer::start(std::string* error) { return impl_->start(error); }
Address AdminServer::local_address() const { return impl_->local_address(); }
void AdminServer::set_ready(bool ready) { impl_->shared().ready.store(ready); }
void AdminServer::stop() { impl_->stop(); }
std::uint64_t AdminServer::rejected_connections() const {
  return impl_->shared().rejected_connections.load(std::memory_order_relaxed);
}

}  // namespace coapgw::admin
