#include "upstream/http_upstream.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <unordered_set>

#include "coap/option.hpp"
#include "common/address.hpp"
#include "common/url.hpp"
#include "upstream/mapping.hpp"
#include "upstream/router.hpp"

namespace coapgw::upstream {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// Bounds of one exchange. Bodies beyond 1 MiB would not fit a CoAP answer
// even block-wise in any sensible time, so they are refused as bad_response.
constexpr std::size_t max_body_bytes = 1024 * 1024;
constexpr std::size_t max_header_bytes = 16 * 1024;
constexpr std::size_t max_read_buffer = 128 * 1024;

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }
std::vector<std::byte> bytes_of(std::string_view s) {
  auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}
beast::string_view bsv(std::string_view s) { return {s.data(), s.size()}; }

// The CoAP method names (coap::method_name) are the HTTP ones, but for iPATCH's spelling.
bool set_method(http::request<http::string_body>& req, std::string_view method) {
  const auto code = coap::method_code(method);
  if (!code) return false;
  req.method_string(*code == coap::code::ipatch ? "iPATCH" : bsv(method));  // RFC 8132 spelling
  return true;
}

ForwardResponse failure(std::uint8_t code, Outcome outcome) {
  ForwardResponse r;
  r.code = code;
  r.outcome = outcome;
  return r;
}

// One TCP (optionally TLS) connection to the upstream.
class Connection {
 public:
  Connection(asio::io_context& io, ssl::context* tls) {
    if (tls) tls_.emplace(io, *tls);
    else plain_.emplace(io);
  }
  tcp::socket::lowest_layer_type& socket() {
    return tls_ ? tls_->lowest_layer() : plain_->lowest_layer();
  }
  ssl::stream<tcp::socket>* tls() { return tls_ ? &*tls_ : nullptr; }
  template <class F>
  void with_stream(F&& f) {
    if (tls_) f(*tls_);
    else f(*plain_);
  }
  void close() {
    error_code ignored;
    socket().close(ignored);
  }

  beast::flat_buffer buffer{max_read_buffer};
  bool reused = false;

 private:
  std::optional<tcp::socket> plain_;
  std::optional<ssl::stream<tcp::socket>> tls_;
};

class Exchange;

// State shared by an upstream and its in-flight exchanges, so a completion
// handler that runs after the upstream was destroyed still finds it.
struct Pool {
  Pool(asio::io_context& io_ctx, HttpTarget t, const RouteSpec& spec)
      : io(io_ctx), target(std::move(t)), max_connections(spec.max_in_flight), timeout(spec.timeout) {
    error_code ec;
    auto addr = asio::ip::make_address(target.host, ec);
    if (!ec) literal = addr;
    std::from_chars(target.port.data(), target.port.data() + target.port.size(), port);
    if (target.tls) {
      tls.emplace(ssl::context::tls_client);
      SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_2_VERSION);
      tls->set_verify_mode(ssl::verify_peer);
      if (spec.ca_file.empty()) tls->set_default_verify_paths();
      else tls->load_verify_file(spec.ca_file);  // throws system_error (a runtime_error)
    }
  }

  asio::io_context& io;
  HttpTarget target;
  std::optional<asio::ip::address> literal;  // host is an IP literal: no DNS
  std::uint16_t port = 0;
  std::optional<ssl::context> tls;           // before `idle`: connections use it
  std::size_t max_connections;
  std::chrono::milliseconds timeout;
  std::size_t open = 0;                      // idle + busy connections
  std::vector<std::unique_ptr<Connection>> idle;
  std::unordered_set<Exchange*> active;
  bool shut_down = false;
};

// One request/response, from picking a connection to calling `done`. Owned
// by the completion handlers in flight (shared_from_this), the Beast way.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(std::shared_ptr<Pool> pool, ForwardRequest request, ForwardDone done)
      : pool_(std::move(pool)),
        method_(std::move(request.method)),
        done_(std::move(done)),
        deadline_(pool_->io),
        resolver_(pool_->io) {
    method_ok_ = set_method(req_, method_);
    // Accept is critical (RFC 7252 §5.10.4): a Content-Format with no media type cannot be asked of
    // an HTTP server, so the request is refused rather than sent without it.
    accept_ok_ = !request.accept || content_format_to_media_type(*request.accept).has_value();
    build_request(request);
  }
  ~Exchange() { pool_->active.erase(this); }

  void start() {
    if (pool_->shut_down) return finish(failure(coap_code(5, 2), Outcome::upstream_error), false);
    if (!method_ok_) return finish(failure(coap_code(5, 1), Outcome::not_implemented), false);
    if (!accept_ok_) return finish(failure(coap_code(4, 6), Outcome::not_implemented), false);
    pool_->active.insert(this);
    deadline_.expires_after(pool_->timeout);
    deadline_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->on_deadline();
    });
    if (!pool_->idle.empty()) {
      conn_ = std::move(pool_->idle.back());
      pool_->idle.pop_back();
      conn_->reused = true;
      return do_write();
    }
    if (pool_->open >= pool_->max_connections) {
      ForwardResponse r = failure(coap_code(5, 3), Outcome::overloaded);
      r.max_age = overloaded_max_age_s;
      return finish(std::move(r), false);
    }
    open_connection();
  }

  // Upstream shutdown: pending operations complete with errors, which then
  // answer 5.02 on the io_context.
  void abort() {
    aborted_ = true;
    resolver_.cancel();
    if (conn_) conn_->close();
  }

 private:
  void build_request(const ForwardRequest& r) {
    const HttpTarget& t = pool_->target;
    // The worker percent-encoded each Uri-Path segment and Uri-Query part (url::append_segment,
    // url::append_query); this is the safety net that keeps spaces, CR/LF and non-ASCII out of the
    // request line whatever the caller passed.
    std::string target = t.base_path;
    target += url::percent_encode_target(r.path.empty() ? std::string_view("/") : std::string_view(r.path));
    if (!r.query.empty()) {
      target += '?';
      target += url::percent_encode_target(r.query);
    }
    req_.target(target);
    req_.version(11);
    req_.set(http::field::host, t.host_header);
    if (r.content_format) {
      auto mt = content_format_to_media_type(*r.content_format);
      req_.set(http::field::content_type, bsv(mt ? *mt : "application/octet-stream"));
    }
    if (r.accept) {
      if (auto mt = content_format_to_media_type(*r.accept)) req_.set(http::field::accept, bsv(*mt));
    }
    // RFC 8075 §5.4 / RFC 7252 §5.10.8: conditional requests keep their preconditions.
    if (!r.if_match.empty()) req_.set(http::field::if_match, if_match_to_http(r.if_match));
    if (r.if_none_match) {
      req_.set(http::field::if_none_match, "*");
    } else if (!r.etags.empty() && (method_ == "GET" || method_ == "FETCH")) {
      // RFC 7252 §5.10.6.2 validation: the device holds these representations; a 304 becomes 2.03.
      req_.set(http::field::if_none_match, etags_to_if_none_match(r.etags));
    }
    if (r.etags.size() == 1) request_etag_ = r.etags.front();
    if (!r.identity.empty()) req_.set("X-Device-Identity", url::percent_encode_controls(r.identity));
    if (!r.tenant.empty()) req_.set("X-Device-Tenant", url::percent_encode_controls(r.tenant));
    if (auto addr = Address::parse(r.remote)) req_.set("X-Forwarded-For", addr->ip_string());
    req_.set("X-CoAP-Session", std::to_string(r.session_id));
    if (r.observe) req_.set("X-CoAP-Observe", std::to_string(*r.observe));
    req_.body().assign(reinterpret_cast<const char*>(r.payload.data()), r.payload.size());
    req_.prepare_payload();
  }

  void open_connection() {
    ++pool_->open;
    conn_ = std::make_unique<Connection>(pool_->io, pool_->tls ? &*pool_->tls : nullptr);
    if (pool_->literal) {
      conn_->socket().async_connect(
          tcp::endpoint(*pool_->literal, pool_->port),
          [self = shared_from_this()](error_code ec) { self->on_connect(ec); });
      return;
    }
    resolver_.async_resolve(
        pool_->target.host, pool_->target.port,
        [self = shared_from_this()](error_code ec, tcp::resolver::results_type results) {
          self->on_resolve(ec, std::move(results));
        });
  }

  void on_resolve(error_code ec, tcp::resolver::results_type results) {
    if (finished_) return;
    if (ec) return fail(coap_code(5, 2), Outcome::connect_failed);
    asio::async_connect(conn_->socket(), results,
                        [self = shared_from_this()](error_code ec2, const tcp::endpoint&) {
                          self->on_connect(ec2);
                        });
  }

  void on_connect(error_code ec) {
    if (finished_) return;
    if (ec) return fail(coap_code(5, 2), Outcome::connect_failed);
    if (auto* stream = conn_->tls()) {
      SSL* ssl_handle = stream->native_handle();
      const std::string& host = pool_->target.host;
      if (pool_->literal) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_handle), host.c_str());
      } else {
        SSL_set_tlsext_host_name(ssl_handle, host.c_str());
        SSL_set1_host(ssl_handle, host.c_str());
      }
      stream->async_handshake(ssl::stream_base::client, [self = shared_from_this()](error_code ec2) {
        self->on_handshake(ec2);
      });
      return;
    }
    do_write();
  }

  void on_handshake(error_code ec) {
    if (finished_) return;
    // A certificate that does not verify is as unreachable as a closed port.
    if (ec) return fail(coap_code(5, 2), Outcome::connect_failed);
    do_write();
  }

  void do_write() {
    conn_->buffer.consume(conn_->buffer.size());
    conn_->with_stream([this](auto& stream) {
      http::async_write(stream, req_, [self = shared_from_this()](error_code ec, std::size_t) {
        self->on_write(ec);
      });
    });
  }

  void on_write(error_code ec) {
    if (finished_) return;
    if (ec) {
      if (may_retry()) return retry_on_fresh_connection();
      return fail(coap_code(5, 2), Outcome::upstream_error);
    }
    parser_.emplace();
    parser_->body_limit(max_body_bytes);
    parser_->header_limit(max_header_bytes);
    conn_->with_stream([this](auto& stream) {
      http::async_read_header(stream, conn_->buffer, *parser_,
                              [self = shared_from_this()](error_code ec2, std::size_t) {
                                self->on_read_header(ec2);
                              });
    });
  }

  // Beast 1.74's async_read does not apply body_limit to a Content-Length
  // that arrives together with the header, so the cap is checked here too.
  void on_read_header(error_code ec) {
    if (finished_) return;
    if (ec) return on_read(ec);
    if (auto length = parser_->content_length(); length && *length > max_body_bytes) {
      return fail(coap_code(5, 2), Outcome::bad_response);
    }
    if (parser_->is_done()) return on_read(ec);
    conn_->with_stream([this](auto& stream) {
      http::async_read(stream, conn_->buffer, *parser_,
                       [self = shared_from_this()](error_code ec2, std::size_t) { self->on_read(ec2); });
    });
  }

  void on_read(error_code ec) {
    if (finished_) return;
    if (ec) {
      const bool stale = ec == http::error::end_of_stream || ec == asio::error::eof ||
                         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
                         ec == ssl::error::stream_truncated;
      // An idle keep-alive connection the server closed meanwhile: nothing of
      // the answer arrived, so sending again on a new connection is safe.
      if (stale && !parser_->got_some() && may_retry()) return retry_on_fresh_connection();
      // Malformed or oversized answers are the upstream's fault in a way a
      // dropped connection is not; they get their own outcome.
      const bool malformed = ec.category() == make_error_code(http::error::body_limit).category() &&
                             ec != http::error::end_of_stream && ec != http::error::partial_message;
      if (malformed) return fail(coap_code(5, 2), Outcome::bad_response);
      return fail(coap_code(5, 2), Outcome::upstream_error);
    }
    auto& res = parser_->get();
    ForwardResponse out;
    out.code = http_status_to_coap(res.result_int(), method_);
    if (auto ct = res.find(http::field::content_type); ct != res.end()) {
      out.content_format = media_type_to_content_format(sv(ct->value()));
    }
    map_response_headers(res, out);
    const std::string& body = res.body();
    if (body.size() > max_body_bytes) return fail(coap_code(5, 2), Outcome::bad_response);
    out.payload.resize(body.size());
    if (!body.empty()) std::memcpy(out.payload.data(), body.data(), body.size());  // an empty vector's data() may be null
    out.outcome = res.result_int() >= 500 ? Outcome::upstream_error : Outcome::ok;
    const bool reusable = res.keep_alive() && !parser_->need_eof() && conn_->buffer.size() == 0;
    finish(std::move(out), reusable);
  }

  // RFC 8075 §6-§7: ETag, freshness and Location come back as CoAP options.
  void map_response_headers(const http::response<http::string_body>& res, ForwardResponse& out) const {
    const unsigned status = res.result_int();
    std::optional<std::vector<std::byte>> etag;
    if (auto it = res.find(http::field::etag); it != res.end()) etag = http_etag_to_coap(sv(it->value()));
    // A 304 without an ETag validates the one representation the device named, if it named one.
    if (!etag && status == 304 && !request_etag_.empty()) etag = request_etag_;
    if (etag) out.options.emplace_back(coap::option::etag, std::move(*etag));
    if (auto it = res.find(http::field::cache_control); it != res.end())
      out.max_age = cache_control_max_age(sv(it->value()));
    if (status == 503 || status == 429) {
      if (auto it = res.find(http::field::retry_after); it != res.end()) {
        if (auto n = retry_after_seconds(sv(it->value()))) out.max_age = n;
      }
    }
    if (status == 201) {
      if (auto it = res.find(http::field::location); it != res.end()) {
        if (auto loc = location_to_options(sv(it->value()), pool_->target.base_path)) {
          for (auto& seg : loc->path) out.options.emplace_back(coap::option::location_path, bytes_of(seg));
          for (auto& part : loc->query) out.options.emplace_back(coap::option::location_query, bytes_of(part));
        }
      }
    }
  }

  bool may_retry() const { return conn_->reused && !retried_ && !aborted_ && !pool_->shut_down; }

  void retry_on_fresh_connection() {
    retried_ = true;
    conn_->close();
    --pool_->open;
    conn_.reset();  // no operation is pending on it: we are in its last handler
    open_connection();
  }

  void on_deadline() {
    if (finished_) return;
    fail(coap_code(5, 4), Outcome::timeout);
  }

  void fail(std::uint8_t code, Outcome outcome) {
    if (aborted_) return finish(failure(coap_code(5, 2), Outcome::upstream_error), false);
    finish(failure(code, outcome), false);
  }

  void finish(ForwardResponse response, bool keep_connection) {
    if (finished_) return;
    finished_ = true;
    deadline_.cancel();
    resolver_.cancel();
    pool_->active.erase(this);
    if (conn_) {
      if (keep_connection && !pool_->shut_down) {
        conn_->reused = false;
        pool_->idle.push_back(std::move(conn_));
      } else {
        // Closed, never reused; the object stays until this exchange dies
        // because an aborted operation may still refer to it.
        conn_->close();
        --pool_->open;
      }
    }
    auto done = std::move(done_);
    done(std::move(response));
  }

  std::shared_ptr<Pool> pool_;
  std::string method_;
  ForwardDone done_;
  asio::steady_timer deadline_;
  tcp::resolver resolver_;
  http::request<http::string_body> req_;
  std::unique_ptr<Connection> conn_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::vector<std::byte> request_etag_;  // the one ETag of a conditional GET, for a bare 304
  bool method_ok_ = false;
  bool accept_ok_ = true;
  bool finished_ = false;
  bool retried_ = false;
  bool aborted_ = false;
};

class HttpUpstream final : public Upstream {
 public:
  HttpUpstream(asio::io_context& io, HttpTarget target, const RouteSpec& spec)
      : pool_(std::make_shared<Pool>(io, std::move(target), spec)) {}
  ~HttpUpstream() override { shutdown(); }

  void forward(ForwardRequest request, ForwardDone done) override {
    auto exchange = std::make_shared<Exchange>(pool_, std::move(request), std::move(done));
    // Started from the io_context so that `done` never runs inside forward().
    asio::post(pool_->io, [exchange] { exchange->start(); });
  }

  void shutdown() override {
    pool_->shut_down = true;
    for (auto& c : pool_->idle) c->close();
    pool_->open -= pool_->idle.size();
    pool_->idle.clear();
    std::vector<Exchange*> active(pool_->active.begin(), pool_->active.end());
    for (Exchange* e : active) e->abort();
  }

 private:
  std::shared_ptr<Pool> pool_;
};

}  // namespace

std::optional<HttpTarget> parse_http_target(std::string_view url) {
  auto parsed = url::parse_server_url(url);
  if (!parsed || (parsed->scheme != "http" && parsed->scheme != "https")) return std::nullopt;
  HttpTarget t;
  t.tls = parsed->scheme == "https";
  const std::string default_port = t.tls ? "443" : "80";
  t.host = std::move(parsed->host);
  t.port = parsed->port ? std::to_string(*parsed->port) : default_port;
  std::string_view path = parsed->path;
  while (path.ends_with('/')) path.remove_suffix(1);
  t.base_path = std::string(path);
  t.host_header = parsed->bracketed ? "[" + t.host + "]" : t.host;
  if (t.port != default_port) t.host_header += ":" + t.port;
  return t;
}

std::unique_ptr<Upstream> make_http_upstream(boost::asio::io_context& io, const RouteSpec& spec) {
  auto target = parse_http_target(spec.upstream);
  if (!target) throw std::runtime_error("route " + spec.prefix + ": bad upstream URL " + spec.upstream);
  if (!target->tls && !spec.ca_file.empty()) {
    throw std::runtime_error("route " + spec.prefix + ": ca_file needs an https upstream");
  }
  try {
    return std::make_unique<HttpUpstream>(io, std::move(*target), spec);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("route " + spec.prefix + ": cannot load CA file " + spec.ca_file + ": " +
                             e.what());
  }
}

}  // namespace coapgw::upstream
