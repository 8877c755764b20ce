// A small blocking HTTP/1.1 (optionally TLS) server for the gateway tests.
//
// Listens on 127.0.0.1 with an ephemeral port, serves each connection on its
// own thread, records every request and counts accepted connections. What it
// answers depends on the request path:
//   ".../status/NNN"  -> status NNN
//   ".../json"        -> 200, application/json
//   ".../slow"        -> waits until release_slow() (or 10 s), then 200
//   ".../big"         -> 200 with a body of 1 MiB + 1 bytes (".../bigchunked": chunked)
//   ".../drop"        -> 200 keep-alive, then closes the connection silently
//   ".../answer?status=NNN&Name=value" -> that status and those (percent-decoded) headers
//   anything else     -> 200, text/plain "hello"
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace coapgw::upstream::test {

struct RecordedRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool has(const std::string& name) const { return headers.count(name) != 0; }
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string{} : it->second;
  }
};

class TestHttpServer {
 public:
  // With `tls` set, every connection is TLS with that server context.
  explicit TestHttpServer(boost::asio::ssl::context* tls = nullptr);
  ~TestHttpServer();
  TestHttpServer(const TestHttpServer&) = delete;
  TestHttpServer& operator=(const TestHttpServer&) = delete;

  std::uint16_t port() const { return port_; }
  std::size_t accepts() const;
  std::vector<RecordedRequest> requests() const;
  std::size_t slow_waiting() const;  // /slow requests currently held
  void release_slow();

 private:
  void accept_loop();
  void serve(std::size_t id, boost::asio::ip::tcp::socket socket);
  template <class Stream>
  void serve_stream(Stream& stream);
  void forget(std::size_t id);

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::ssl::context* tls_;
  std::uint16_t port_ = 0;
  std::thread accept_thread_;

  mutable std::mutex mutex_;
  std::condition_variable slow_cv_;
  bool released_ = false;
  bool stopping_ = false;
  std::size_t accepts_ = 0;
  std::size_t slow_waiting_ = 0;
  std::vector<RecordedRequest> requests_;
  std::map<std::size_t, int> live_fds_;  // connection id -> fd, for stop
  std::vector<std::thread> threads_;
};

}  // namespace coapgw::upstream::test
