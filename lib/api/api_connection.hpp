// One backend API connection (private to lib/api; pulls in Beast). It reads
// one request at a time, hands it to the ApiService and writes the answer;
// at most one answer is outstanding, and waiting for it is bounded too
// (reply_guard), so a Downlink that never calls back cannot pin a socket.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstdint>
#include <memory>
#include <optional>

#include "api/api_server.hpp"
#include "api/http_listener.hpp"
#include "api/http_stream.hpp"
#include "api/request_body.hpp"
#include "api/service.hpp"
#include "metrics/labels.hpp"

namespace coapgw::api {

// The longest an answer may take: the longest request timeout plus slack.
inline constexpr std::chrono::milliseconds reply_guard = max_timeout + std::chrono::seconds(30);

class ApiConnection;

// What the server and its connections share; API thread only.
struct ApiShared {
  ApiShared(const ApiSettings& s, metrics::Metrics& m) : settings(s), metrics(m) {}
  const ApiSettings settings;
  metrics::Metrics& metrics;
  std::unique_ptr<ApiService> service;
};

class ApiConnection : public Abortable, public std::enable_shared_from_this<ApiConnection> {
 public:
  ApiConnection(ApiShared& shared, std::unique_ptr<HttpListener::Slot> slot, boost::asio::ip::tcp::socket socket);
  void start() { do_read(); }
  void abort() override;

 private:
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void refuse(metrics::ApiReject reason, int status, std::string_view message);
  void on_reply(std::uint64_t generation, ApiResponse response);
  void do_write(ApiResponse response);
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  void close();

  ApiShared& shared_;
  std::unique_ptr<HttpListener::Slot> slot_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<http_stream::Parser> parser_;
  boost::beast::http::response<boost::beast::http::string_body> response_;
  boost::asio::steady_timer reply_timer_;
  unsigned version_ = 11;
  bool keep_alive_ = false;
  bool waiting_ = false;
  std::uint64_t generation_ = 0;  // answers for an older generation are stale
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace coapgw::api
