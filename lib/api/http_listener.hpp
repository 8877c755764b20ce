// coapgw::api::HttpListener — what every HTTP listener of the gateway (the
// admin listener, the backend API) does the same way: bind, run one
// io_context on its own thread, accept with a connection cap (a refused
// connection is closed at once and reported), back off on accept errors, and
// on stop abort every open connection and join. What a connection does is
// the owner's business: it gets the socket and a Slot that frees its place
// when the connection is destroyed. Also PostGate, the hand-off from other
// threads onto the listener thread. Private to lib/api and lib/admin (Asio).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/address.hpp"
#include "common/log.hpp"

namespace coapgw::api {

// Hands work from any thread to an io_context until closed; after close()
// (the server stopped, the io_context may be gone) hand-offs are dropped.
class PostGate {
 public:
  explicit PostGate(boost::asio::io_context& ioc) : ioc_(&ioc) {}
  void post(std::function<void()> fn);
  void close();

 private:
  std::mutex mutex_;
  boost::asio::io_context* ioc_;
};

// A connection the listener can cut short when it stops.
class Abortable {
 public:
  virtual ~Abortable() = default;
  virtual void abort() = 0;
};

class HttpListener {
 public:
  // Held by a connection for its lifetime: its place under the cap.
  class Slot {
   public:
    Slot(HttpListener& listener, std::uint64_t id) : listener_(listener), id_(id) {}
    ~Slot() { listener_.connections_.erase(id_); }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    HttpListener& listener_;
    std::uint64_t id_;
  };
  // Builds and starts a connection for an accepted socket (listener thread).
  using Admit = std::function<std::shared_ptr<Abortable>(boost::asio::ip::tcp::socket, std::unique_ptr<Slot>)>;

  // `name` prefixes errors and logs ("admin", "api"); `refused` runs (on the
  // listener thread) for each connection closed because the cap was reached.
  HttpListener(std::string name, std::size_t max_connections, Admit admit, std::function<void()> refused);
  ~HttpListener();
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  boost::asio::io_context& context() { return ioc_; }
  // Binds (port 0 allowed), starts accepting and the thread. False and
  // *error ("<name> listener <address>: <what>") when it cannot. Call once.
  bool start(const Address& listen, std::string* error);
  Address local_address() const { return local_; }
  // Runs `on_stop` on the listener thread, closes the acceptor, aborts every
  // connection, then joins once their handlers drained. Idempotent.
  void stop(std::function<void()> on_stop = {});
  bool stopping() const { return stopping_; }  // listener thread

 private:
  void accept_next();
  void back_off(const boost::system::error_code& ec);
  void admit(boost::asio::ip::tcp::socket socket);

  const std::string name_;
  const std::size_t max_connections_;
  const Admit admit_;
  const std::function<void()> refused_;
  // Destroyed after ioc_: connections that die with its handlers free their slots here.
  std::unordered_map<std::uint64_t, std::weak_ptr<Abortable>> connections_;
  std::uint64_t next_id_ = 1;
  boost::asio::io_context ioc_{1};
  boost::asio::ip::tcp::acceptor acceptor_{ioc_};
  boost::asio::steady_timer retry_timer_{ioc_};
  log::RateLimited accept_log_;
  Address local_;
  bool started_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace coapgw::api
