// Request handling for one admin connection; see http_connection.hpp.
#include "admin/http_connection.hpp"

#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "common/log.hpp"
#include "metrics/metrics.hpp"

#include <prometheus/counter.h>

namespace coapgw::admin {

namespace beast = boost::beast;
namespace http = boost::beast::http;

namespace {

constexpr std::string_view text_plain = "text/plain; charset=utf-8";
constexpr std::string_view metrics_type = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view json_type = "application/json";
// How long a closing connection reads and drops what the client still sends
// (api/http_stream.hpp linger: an RST could discard our answer client-side).
constexpr std::chrono::milliseconds max_drain_time{1000};

enum class Route { metrics, healthz, readyz, sessions, unknown };

Route route_of(std::string_view path) {
  if (path == "/metrics") return Route::metrics;
  if (path == "/healthz") return Route::healthz;
  if (path == "/readyz") return Route::readyz;
  if (path == "/v1/sessions") return Route::sessions;
  return Route::unknown;
}

}  // namespace

HttpConnection::HttpConnection(ServerShared& shared, std::unique_ptr<api::HttpListener::Slot> slot,
                               boost::asio::ip::tcp::socket socket)
    : shared_(shared),
      slot_(std::move(slot)),
      stream_(std::move(socket)),
      buffer_(shared.settings.max_request_bytes),
      lister_timer_(stream_.get_executor()) {}

void HttpConnection::start() { do_read(); }

void HttpConnection::abort() {
  closing_ = true;
  lister_timer_.cancel();
  close();
}

void HttpConnection::close() {
  if (closed_) return;
  closed_ = true;
  waiting_for_lister_ = false;
  lister_timer_.cancel();
  api::http_stream::close(stream_);
}

void HttpConnection::do_read() {
  if (closing_) return close();
  api::http_stream::reset_parser(parser_, shared_.settings.max_request_bytes);
  // One deadline for the whole request: a client trickling bytes (slowloris)
  // or idling on keep-alive is cut off when it expires.
  stream_.expires_after(shared_.settings.request_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpConnection::on_read, shared_from_this()));
}

void HttpConnection::on_read(beast::error_code ec, std::size_t) {
  if (closed_) return;
  if (ec == http::error::end_of_stream) return close();
  if (ec == beast::error::timeout) {
    // An idle keep-alive connection (a scraper between scrapes) just ends; a
    // request still incomplete at the deadline is a slow or stuck client.
    if (parser_ && parser_->got_some())
      shared_.metrics.admin_rejected(metrics::AdminReject::timeout).Increment();
    return close();
  }
  if (ec == http::error::header_limit || ec == http::error::body_limit ||
      ec == http::error::buffer_overflow) {
    shared_.metrics.admin_rejected(metrics::AdminReject::too_large).Increment();
    head_ = false;
    keep_alive_ = false;
    version_ = 11;
    return respond(http::status::payload_too_large, "request too large\n", text_plain);
  }
  if (ec == boost::asio::error::operation_aborted) return close();
  if (ec) {
    // Malformed request: say so once, then close (we cannot resync the stream).
    if (parser_ && parser_->got_some()) {
      head_ = false;
      keep_alive_ = false;
      version_ = 11;
      return respond(http::status::bad_request, "bad request\n", text_plain);
    }
    return close();
  }
  stream_.expires_never();
  Request req = parser_->release();
  handle(req);
}

void HttpConnection::handle(Request& req) {
  head_ = req.method() == http::verb::head;
  keep_alive_ = req.keep_alive();
  version_ = req.version();

  const std::string_view target(req.target().data(), req.target().size());
  const auto qmark = target.find('?');
  const std::string_view path = target.substr(0, qmark);
  const std::string_view query =
      qmark == std::string_view::npos ? std::string_view{} : target.substr(qmark + 1);

  const Route route = route_of(path);
  if (route == Route::unknown) return respond(http::status::not_found, "not found\n", text_plain);
  if (req.method() != http::verb::get && !head_) {
    response_ = {};
    response_.set(http::field::allow, "GET, HEAD");
    return respond(http::status::method_not_allowed, "method not allowed\n", text_plain);
  }
  switch (route) {
    case Route::metrics:
      return respond(http::status::ok, shared_.metrics.serialize(), metrics_type);
    case Route::healthz:
      return respond(http::status::ok, "ok\n", text_plain);
    case Route::readyz:
      return shared_.ready.load() ? respond(http::status::ok, "ready\n", text_plain)
                                  : respond(http::status::service_unavailable, "not ready\n",
                                            text_plain);
    case Route::sessions: {
      auto parsed = parse_page_query(query);
      if (!parsed.query)
        return respond(http::status::bad_request, render_error(parsed.error), json_type);
      return do_list_sessions(*parsed.query);
    }
    case Route::unknown:
      break;
  }
}

void HttpConnection::do_list_sessions(const PageQuery& query) {
  page_ = query;
  waiting_for_lister_ = true;
  const std::uint64_t generation = ++lister_generation_;
  lister_timer_.expires_after(shared_.settings.lister_timeout);
  lister_timer_.async_wait(
      [self = shared_from_this(), generation](beast::error_code ec) {
        self->on_lister_timeout(ec, generation);
      });
  // The answer may come from any worker thread, now or never; it is carried
  // back onto the admin thread and dropped if the request already gave up.
  auto done = [gate = shared_.gate, weak = weak_from_this(),
               generation](std::vector<SessionInfo> sessions) {
    gate->post([weak, generation, sessions = std::move(sessions)]() mutable {
      if (auto self = weak.lock()) self->on_sessions(generation, std::move(sessions));
    });
  };
  try {
    // Ask for one more than the page so we know whether a next page exists.
    shared_.lister(query.after_id, query.limit + 1, std::move(done));
  } catch (const std::exception& e) {
    log::error(std::string("admin: session lister failed: ") + e.what());
    waiting_for_lister_ = false;
    lister_timer_.cancel();
    respond(http::status::internal_server_error, render_error("session listing failed"),
            json_type);
  }
}

void HttpConnection::on_sessions(std::uint64_t generation, std::vector<SessionInfo> sessions) {
  if (closed_ || !waiting_for_lister_ || generation != lister_generation_) return;
  waiting_for_lister_ = false;
  lister_timer_.cancel();
  respond(http::status::ok, render_sessions_page(std::move(sessions), *page_), json_type);
}

void HttpConnection::on_lister_timeout(beast::error_code ec, std::uint64_t generation) {
  if (ec || closed_ || !waiting_for_lister_ || generation != lister_generation_) return;
  waiting_for_lister_ = false;
  log::warn("admin: workers did not answer the session listing in time");
  respond(http::status::service_unavailable, render_error("workers did not answer in time"),
          json_type);
}

void HttpConnection::respond(http::status status, std::string body,
                             std::string_view content_type) {
  // Headers set before respond() (Allow) survive; everything else is reset.
  Response res;
  res.version(version_);
  res.result(status);
  for (const auto& field : response_) res.set(field.name_string(), field.value());
  response_ = std::move(res);
  response_.set(http::field::server, "coapgw");
  response_.set(http::field::content_type,
                boost::beast::string_view(content_type.data(), content_type.size()));
  response_.set(http::field::cache_control, "no-store");
  response_.keep_alive(keep_alive_);
  response_.body() = std::move(body);
  response_.prepare_payload();
  if (head_) {
    // HEAD: same headers, including the length the GET body would have.
    const auto length = response_.body().size();
    response_.body().clear();
    response_.content_length(length);
  }
  do_write();
}

void HttpConnection::do_write() {
  stream_.expires_after(shared_.settings.request_timeout);
  http::async_write(stream_, response_,
                    beast::bind_front_handler(&HttpConnection::on_write, shared_from_this()));
}

void HttpConnection::on_write(beast::error_code ec, std::size_t) {
  if (closed_) return;
  const bool keep = !ec && keep_alive_ && !closing_;
  response_ = {};
  if (ec) return close();
  if (!keep) return do_lingering_close();
  do_read();
}

void HttpConnection::do_lingering_close() {
  closing_ = true;
  api::http_stream::linger(stream_,
                           std::min<std::chrono::milliseconds>(shared_.settings.request_timeout, max_drain_time),
                           [self = shared_from_this()] { self->close(); });
}

}  // namespace coapgw::admin
