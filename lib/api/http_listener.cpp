// Bind, accept loop and lifecycle shared by the HTTP listeners; see http_listener.hpp.
#include "api/http_listener.hpp"

#include <boost/asio/post.hpp>

#include <vector>

namespace coapgw::api {

using boost::asio::ip::tcp;

void PostGate::post(std::function<void()> fn) {
  std::lock_guard lock(mutex_);
  if (ioc_ != nullptr) boost::asio::post(*ioc_, std::move(fn));
}

void PostGate::close() {
  std::lock_guard lock(mutex_);
  ioc_ = nullptr;
}

HttpListener::HttpListener(std::string name, std::size_t max_connections, Admit admit, std::function<void()> refused)
    : name_(std::move(name)), max_connections_(max_connections), admit_(std::move(admit)), refused_(std::move(refused)) {}

HttpListener::~HttpListener() { stop(); }

bool HttpListener::start(const Address& listen, std::string* error) {
  boost::system::error_code ec;
  const auto fail = [&](const std::string& what) {
    if (error) *error = name_ + " listener " + listen.to_string() + ": " + what;
    acceptor_.close(ec);
    return false;
  };
  if (started_) return fail("already started");
  tcp::endpoint endpoint;
  const std::size_t len = listen.to_sockaddr(endpoint.data(), endpoint.capacity());
  if (len == 0) return fail("the listen address is not set");
  endpoint.resize(len);
  const char* step = "open";
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) step = "SO_REUSEADDR", acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) step = "bind", acceptor_.bind(endpoint, ec);
  if (!ec) step = "listen", acceptor_.listen(tcp::socket::max_listen_connections, ec);
  tcp::endpoint bound;
  if (!ec) step = "local address", bound = acceptor_.local_endpoint(ec);
  if (ec) return fail(std::string(step) + ": " + ec.message());
  local_ = Address::from_sockaddr(bound.data());
  started_ = true;
  accept_next();
  thread_ = std::thread([this] {
    log::set_thread_worker(-1);
    ioc_.run();
  });
  return true;
}

void HttpListener::stop(std::function<void()> on_stop) {
  if (!thread_.joinable()) return;
  boost::asio::post(ioc_, [this, on_stop = std::move(on_stop)] {
    stopping_ = true;
    if (on_stop) on_stop();
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    retry_timer_.cancel();
    // Copy first: aborting may destroy a connection, which frees its slot.
    std::vector<std::shared_ptr<Abortable>> open;
    for (auto& [id, weak] : connections_)
      if (auto c = weak.lock()) open.push_back(std::move(c));
    for (auto& c : open) c->abort();
  });
  // Every pending operation now completes with an error and nothing new is
  // started, so run() returns once they have drained.
  thread_.join();
}

void HttpListener::accept_next() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (stopping_ || ec == boost::asio::error::operation_aborted) return;
    if (ec) return back_off(ec);
    admit(std::move(socket));
    accept_next();
  });
}

// EMFILE and friends: wait a little instead of spinning on the error.
void HttpListener::back_off(const boost::system::error_code& ec) {
  if (auto suppressed = accept_log_.allow(std::chrono::steady_clock::now()))
    log::warn(name_ + ": accept failed: " + ec.message() +
              (*suppressed ? " (" + std::to_string(*suppressed) + " more suppressed)" : ""));
  retry_timer_.expires_after(std::chrono::milliseconds(100));
  retry_timer_.async_wait([this](boost::system::error_code wait_ec) {
    if (!wait_ec && !stopping_) accept_next();
  });
}

void HttpListener::admit(tcp::socket socket) {
  if (connections_.size() >= max_connections_) {
    if (refused_) refused_();
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  const std::uint64_t id = next_id_++;
  auto slot = std::make_unique<Slot>(*this, id);
  // The slot is in the table before the connection starts, so the cap holds
  // even when admit_ runs handlers inline.
  connections_.emplace(id, std::weak_ptr<Abortable>());
  if (auto connection = admit_(std::move(socket), std::move(slot))) {
    if (auto it = connections_.find(id); it != connections_.end()) it->second = connection;
  }
}

}  // namespace coapgw::api
