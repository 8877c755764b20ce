// One admin HTTP connection (private to lib/admin; pulls in Beast).
//
// A connection reads one request at a time, so it holds at most one
// outstanding lister call; every wait it makes is bounded by a deadline.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>

#include "admin/admin_server.hpp"
#include "admin/sessions_page.hpp"
#include "api/http_listener.hpp"
#include "api/http_stream.hpp"

namespace coapgw::admin {

// Hands lister answers from worker threads to the admin io_context; a no-op
// once the server stopped (the io_context may be gone by then).
using CallbackGate = api::PostGate;

class HttpConnection;

// State shared by the server and its connections; touched only on the admin
// thread except where noted.
struct ServerShared {
  ServerShared(AdminSettings s, metrics::Metrics& m, SessionLister l)
      : settings(std::move(s)), metrics(m), lister(std::move(l)) {}
  const AdminSettings settings;
  metrics::Metrics& metrics;
  const SessionLister lister;
  std::atomic<bool> ready{false};                    // any thread
  std::atomic<std::uint64_t> rejected_connections{0};  // any thread reads
  std::shared_ptr<CallbackGate> gate;
};

class HttpConnection : public api::Abortable, public std::enable_shared_from_this<HttpConnection> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  HttpConnection(ServerShared& shared, std::unique_ptr<api::HttpListener::Slot> slot,
                 boost::asio::ip::tcp::socket socket);

  void start();
  // Server shutdown: cancel everything now; pending handlers then finish.
  void abort() override;

 private:
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void handle(Request& req);
  void do_list_sessions(const PageQuery& query);
  void on_sessions(std::uint64_t generation, std::vector<SessionInfo> sessions);
  void on_lister_timeout(boost::beast::error_code ec, std::uint64_t generation);
  void respond(boost::beast::http::status status, std::string body, std::string_view content_type);
  void do_write();
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  void do_lingering_close();
  void close();

  ServerShared& shared_;
  std::unique_ptr<api::HttpListener::Slot> slot_;  // our place under max_connections
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<api::http_stream::Parser> parser_;
  Response response_;
  boost::asio::steady_timer lister_timer_;

  // Per request
  bool head_ = false;
  bool keep_alive_ = false;
  unsigned version_ = 11;
  std::optional<PageQuery> page_;

  bool waiting_for_lister_ = false;
  std::uint64_t lister_generation_ = 0;  // answers for older generations are stale
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace coapgw::admin
