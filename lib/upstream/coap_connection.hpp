// coapgw::upstream::CoapConnection — the transport of one coap:// or coaps:// upstream (internal to
// gateway/, included by .cpp files only): one UDP socket connected to the upstream (so ICMP port
// unreachable surfaces), and for coaps:// the DTLS engine in the client role (dtls::ClientContext
// with the route's PSK, one dtls::Engine per connection) with its flight/handshake timer. It hands
// whole CoAP messages up and knows nothing of exchanges: those are the exchange layer's.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "dtls/client_context.hpp"
#include "exchange/layer.hpp"

namespace coapgw::session {
class TlsState;
}

namespace coapgw::upstream {

class CoapConnection : public std::enable_shared_from_this<CoapConnection> {
 public:
  // What the connection tells its owner; never called after close().
  class Events {
   public:
    virtual ~Events() = default;
    virtual void on_message(std::span<const std::byte> message) = 0;
    virtual void on_connected() = 0;                             // coaps: handshake done
    virtual void on_handshake_failed(const std::string& why) = 0;  // coaps
    // coaps: the established connection is gone (close_notify, fatal alert, ICMP unreachable:
    // `unreachable`); the next connect() handshakes again.
    virtual void on_connection_lost(const std::string& why, bool unreachable) = 0;
    virtual void on_unreachable() = 0;  // coap: ICMP port unreachable for one of our datagrams
  };

  // `dtls` null: coap://. Opens and connects the socket (throws boost::system::system_error).
  CoapConnection(boost::asio::io_context& io, boost::asio::ip::udp::endpoint remote,
                 std::unique_ptr<dtls::ClientContext> dtls);

  void start(Events& events);  // starts receiving
  // A fresh DTLS connection (any previous one is dropped without a word): the handshake begins.
  void connect();
  // Sends close_notify on an established DTLS connection and closes the socket.
  void close();
  // One CoAP message: a datagram for coap://, a record for coaps:// (while not established it is
  // dropped and left to the exchange's retransmission). Never calls Events synchronously.
  exchange::SendResult send(std::span<const std::byte> message);

  bool secure() const { return dtls_context_ != nullptr; }
  bool established() const { return dtls_in(dtls::Engine::State::established); }
  bool handshaking() const { return dtls_in(dtls::Engine::State::handshake); }
  const Address& local() const { return local_; }
  const Address& remote() const { return remote_addr_; }
  // The session's view of the connection (coap_session_get_tls(), the PSK accessors); valid while
  // this connection lives.
  std::unique_ptr<session::TlsState> tls_state() const;

 private:
  using State = dtls::Engine::State;
  void do_receive();
  void on_dtls_datagram(std::span<const std::byte> datagram);
  void on_icmp_unreachable();
  boost::system::error_code flush(dtls::Output& out);
  void arm_timer();
  void after_step(State before, dtls::Output& out);
  bool dtls_in(State state) const { return dtls_ && dtls_->state() == state; }
  std::string failure_text() const;
  void lost(const std::string& why, bool unreachable);

  boost::asio::io_context& io_;
  boost::asio::ip::udp::socket socket_;
  Address local_;
  Address remote_addr_;
  std::unique_ptr<dtls::ClientContext> dtls_context_;  // null for coap://
  std::unique_ptr<dtls::Engine> dtls_;                 // the current connection, null before the first
  boost::asio::steady_timer timer_;  // DTLS flight retransmission and handshake deadline (next_timer)
  std::uint64_t generation_ = 0;     // timers and posts of an earlier connection ignore themselves
  std::vector<std::byte> rx_;
  Events* events_ = nullptr;
  bool closed_ = false;
};

}  // namespace coapgw::upstream
