// Lifecycle of the admin server on the shared HttpListener (bind, accept,
// connection cap, thread); request handling lives in http_connection.cpp.
#include "admin/admin_server.hpp"

#include <boost/asio/ip/tcp.hpp>

#include "admin/http_connection.hpp"
#include "common/log.hpp"
#include "metrics/metrics.hpp"

#include <prometheus/counter.h>

namespace coapgw::admin {

using boost::asio::ip::tcp;

class AdminServer::Impl {
 public:
  Impl(AdminSettings settings, metrics::Metrics& metrics, SessionLister lister)
      : shared_(std::move(settings), metrics, std::move(lister)),
        listener_(
            "admin", shared_.settings.max_connections,
            [this](tcp::socket socket, std::unique_ptr<api::HttpListener::Slot> slot) {
              auto connection = std::make_shared<HttpConnection>(shared_, std::move(slot), std::move(socket));
              connection->start();
              return connection;
            },
            [this] {
              shared_.rejected_connections.fetch_add(1, std::memory_order_relaxed);
              shared_.metrics.admin_rejected(metrics::AdminReject::connection_limit).Increment();
            }) {
    shared_.gate = std::make_shared<CallbackGate>(listener_.context());
  }

  bool start(std::string* error) { return listener_.start(shared_.settings.listen, error); }

  void stop() {
    shared_.gate->close();  // late lister answers are dropped from now on
    listener_.stop();
  }

  Address local_address() const { return listener_.local_address(); }
  ServerShared& shared() { return shared_; }
  const ServerShared& shared() const { return shared_; }

 private:
  // Order matters: connections (owned by handlers in the listener's
  // io_context) refer to shared_, so shared_ is declared first and destroyed last.
  ServerShared shared_;
  api::HttpListener listener_;
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
