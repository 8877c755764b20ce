// Reading, answering and closing one backend API connection; see api_connection.hpp.
#include "api/api_connection.hpp"

#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <prometheus/counter.h>

#include "api/answers.hpp"
#include "metrics/metrics.hpp"

namespace coapgw::api {

namespace beast = boost::beast;
namespace http = boost::beast::http;

namespace {
// How long a closing connection reads and drops what the client still sends.
constexpr std::chrono::milliseconds drain_time{1000};
}  // namespace

ApiConnection::ApiConnection(ApiShared& shared, std::unique_ptr<HttpListener::Slot> slot,
                             boost::asio::ip::tcp::socket socket)
    : shared_(shared),
      slot_(std::move(slot)),
      stream_(std::move(socket)),
      buffer_(shared.settings.max_request_bytes),
      reply_timer_(stream_.get_executor()) {}

void ApiConnection::abort() {
  closing_ = true;
  close();
}

void ApiConnection::close() {
  if (closed_) return;
  closed_ = true;
  waiting_ = false;
  reply_timer_.cancel();
  http_stream::close(stream_);
}

void ApiConnection::do_read() {
  if (closing_) return close();
  http_stream::reset_parser(parser_, shared_.settings.max_request_bytes);
  // One deadline per request, from its first byte to its last, and for the
  // idle time before it: a trickling client is cut off here.
  stream_.expires_after(shared_.settings.request_timeout);
  http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&ApiConnection::on_read, shared_from_this()));
}

void ApiConnection::refuse(metrics::ApiReject reason, int status, std::string_view message) {
  shared_.metrics.api_rejected(reason).Increment();
  keep_alive_ = false;
  do_write({status, render_error(message), {}});
}

void ApiConnection::on_read(beast::error_code ec, std::size_t) {
  if (closed_) return;
  const bool partial = parser_ && parser_->got_some();
  if (ec == beast::error::timeout) {
    if (partial) shared_.metrics.api_rejected(metrics::ApiReject::timeout).Increment();
    return close();  // idle keep-alive connections just end
  }
  if (ec == http::error::body_limit || ec == http::error::header_limit || ec == http::error::buffer_overflow)
    return refuse(metrics::ApiReject::too_large, 413, "request larger than api.max_request_bytes");
  if (ec) {
    if (!partial || ec == http::error::end_of_stream || ec == boost::asio::error::operation_aborted) return close();
    return refuse(metrics::ApiReject::bad_request, 400, "malformed HTTP request");
  }
  stream_.expires_never();
  auto request = parser_->release();
  version_ = request.version();
  keep_alive_ = request.keep_alive();
  ApiRequest api_request;
  api_request.method = std::string(request.method_string());
  api_request.target = std::string(request.target());
  api_request.authorization = std::string(request[http::field::authorization]);
  api_request.body = std::move(request.body());

  waiting_ = true;
  const std::uint64_t generation = ++generation_;
  reply_timer_.expires_after(reply_guard);
  reply_timer_.async_wait([self = shared_from_this(), generation](beast::error_code wait_ec) {
    if (!wait_ec) self->on_reply(generation, {504, render_error("no answer in time"), {}});
  });
  // The service answers on this thread, now or later; the connection may be
  // gone by then.
  shared_.service->handle(api_request, [weak = weak_from_this(), generation](ApiResponse response) {
    if (auto self = weak.lock()) self->on_reply(generation, std::move(response));
  });
}

void ApiConnection::on_reply(std::uint64_t generation, ApiResponse response) {
  if (closed_ || !waiting_ || generation != generation_) return;
  waiting_ = false;
  reply_timer_.cancel();
  do_write(std::move(response));
}

void ApiConnection::do_write(ApiResponse response) {
  response_ = {};
  response_.version(version_);
  response_.result(static_cast<unsigned>(response.status));
  response_.set(http::field::server, "coapgw");
  response_.set(http::field::content_type, "application/json");
  response_.set(http::field::cache_control, "no-store");
  if (response.status == 401) response_.set(http::field::www_authenticate, "Bearer realm=\"coapgw\"");
  if (!response.allow.empty()) response_.set(http::field::allow, response.allow);
  response_.keep_alive(keep_alive_ && !closing_);
  response_.body() = std::move(response.body);
  response_.prepare_payload();
  stream_.expires_after(shared_.settings.request_timeout);
  http::async_write(stream_, response_, beast::bind_front_handler(&ApiConnection::on_write, shared_from_this()));
}

void ApiConnection::on_write(beast::error_code ec, std::size_t) {
  if (closed_) return;
  if (ec) return close();
  if (keep_alive_ && !closing_) return do_read();
  closing_ = true;
  http_stream::linger(stream_, std::min<std::chrono::milliseconds>(drain_time, shared_.settings.request_timeout),
                      [self = shared_from_this()] { self->close(); });
}

}  // namespace coapgw::api
