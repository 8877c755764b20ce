#include "test_http_server.hpp"

#include "common/url.hpp"

#include <sys/socket.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>

namespace coapgw::upstream::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

TestHttpServer::TestHttpServer(asio::ssl::context* tls)
    : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), tls_(tls) {
  port_ = acceptor_.local_endpoint().port();
  accept_thread_ = std::thread([this] { accept_loop(); });
}

TestHttpServer::~TestHttpServer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    // shutdown() wakes the blocked accept() and read() calls on Linux.
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    for (auto& [id, fd] : live_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  slow_cv_.notify_all();
  accept_thread_.join();
  for (auto& t : threads_) t.join();
}

std::size_t TestHttpServer::accepts() const {
  std::lock_guard lock(mutex_);
  return accepts_;
}

std::vector<RecordedRequest> TestHttpServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::size_t TestHttpServer::slow_waiting() const {
  std::lock_guard lock(mutex_);
  return slow_waiting_;
}

void TestHttpServer::release_slow() {
  {
    std::lock_guard lock(mutex_);
    released_ = true;
  }
  slow_cv_.notify_all();
}

void TestHttpServer::accept_loop() {
  for (std::size_t id = 0;; ++id) {
    boost::system::error_code ec;
    tcp::socket socket(io_);
    acceptor_.accept(socket, ec);
    std::lock_guard lock(mutex_);
    if (ec || stopping_) return;
    ++accepts_;
    live_fds_[id] = socket.native_handle();
    threads_.emplace_back([this, id, s = std::move(socket)]() mutable { serve(id, std::move(s)); });
  }
}

void TestHttpServer::forget(std::size_t id) {
  std::lock_guard lock(mutex_);
  live_fds_.erase(id);
}

void TestHttpServer::serve(std::size_t id, tcp::socket socket) {
  if (tls_) {
    asio::ssl::stream<tcp::socket> stream(std::move(socket), *tls_);
    boost::system::error_code ec;
    stream.handshake(asio::ssl::stream_base::server, ec);
    if (!ec) serve_stream(stream);
    forget(id);  // before the stream (and its fd) goes away
    return;
  }
  serve_stream(socket);
  forget(id);
}

template <class Stream>
void TestHttpServer::serve_stream(Stream& stream) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    boost::system::error_code ec;
    http::read(stream, buffer, req, ec);
    if (ec) return;
    RecordedRequest rec;
    rec.method = std::string(req.method_string());
    rec.target = std::string(req.target());
    for (const auto& f : req) {
      std::string name(f.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      rec.headers[name] = std::string(f.value());
    }
    rec.body = req.body();
    const std::string path = rec.target.substr(0, rec.target.find('?'));
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(rec);
    }

    http::response<http::string_body> res;
    res.version(11);
    res.result(http::status::ok);
    res.set(http::field::content_type, "text/plain");
    res.body() = "hello";
    bool drop = false;
    bool chunked = false;
    auto ends_with = [&](const std::string& suffix) {
      return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (auto pos = path.find("status/"); pos != std::string::npos) {
      res.result(static_cast<unsigned>(std::stoi(path.substr(pos + 7))));
      res.body() = "status";
    } else if (ends_with("/json")) {
      res.set(http::field::content_type, "application/json; charset=utf-8");
      res.body() = R"({"ok":true})";
    } else if (ends_with("/slow")) {
      std::unique_lock lock(mutex_);
      ++slow_waiting_;
      slow_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return released_ || stopping_; });
      --slow_waiting_;
      res.body() = "slow";
    } else if (ends_with("/big") || ends_with("/bigchunked")) {
      res.body() = std::string(1024 * 1024 + 1, 'x');
      chunked = ends_with("/bigchunked");
    } else if (ends_with("/drop")) {
      drop = true;
    } else if (ends_with("/answer")) {
      // Query "Name=value&..." (percent-decoded) sets response headers; "status=NNN" the status.
      const auto q = rec.target.find('?');
      for (const auto& part : url::split_query(q == std::string::npos ? "" : rec.target.substr(q + 1))) {
        const auto eq = part.find('=');
        if (eq == std::string::npos) continue;
        const std::string name = part.substr(0, eq), value = part.substr(eq + 1);
        if (name == "status") {
          res.result(static_cast<unsigned>(std::stoi(value)));
        } else {
          res.set(name, value);
        }
      }
      if (res.result_int() == 304 || res.result_int() == 204) res.body().clear();
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    if (chunked) res.chunked(true);
    http::write(stream, res, ec);
    if (ec || drop || !req.keep_alive()) return;
  }
}

}  // namespace coapgw::upstream::test
