// coapgw::transport::TcpStreamListener — CoAP over plain TCP (RFC 8323, coap+tcp) on one worker's
// io_context: the acceptor, and a driver per accepted socket that runs a StreamConnection on it.
//
// It owns the sockets and the I/O bounds of a stream connection, and nothing of CoAP semantics: the
// connection cap (refused connections are closed at once and counted), the read chunk, the write
// queue (a peer that does not read is a slow reader: aborted and counted), the flush-then-close on
// every ending, with write_timeout as the last word, and one timer per connection armed at
// StreamConnection::next_deadline(). Whole messages, the CSM, and the ending go to the Host, which
// is the worker: it keys a session by the link and answers through StreamLink::send. Boost.Asio
// stays in the .cpp. TLS and WebSockets are drivers still to come over the same StreamConnection.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <system_error>

#include "common/address.hpp"
#include "transport/stream_connection.hpp"

namespace boost::asio {
class io_context;
}
struct ssl_ctx_st;
struct ssl_st;

namespace coapgw::transport {

// One accepted connection as the application sees it. Valid from Host::opened until Host::closed
// returns; the listener owns it.
class StreamLink {
 public:
  virtual ~StreamLink() = default;
  virtual std::uint64_t id() const = 0;  // unique per listener
  virtual const Address& remote() const = 0;
  virtual const Address& local() const = 0;
  virtual StreamState state() const = 0;
  virtual StreamConnection::SendResult send(const coap::Message& message) = 0;
  virtual void release(std::string_view diagnostic) = 0;  // drain: Release, then the peer closes
  virtual void abort(std::string_view diagnostic) = 0;
  // The TLS connection (SSL*) of a coaps+tcp link once its handshake finished; nullptr for TCP.
  virtual ssl_st* tls() const { return nullptr; }
  // After Host::wait_for_key returned true: hands the held bytes to the TLS handshake now (the key
  // is known, or will never be: then the handshake fails as for an unknown identity).
  virtual void resume() {}
};

struct TcpListenerSettings {
  StreamSettings stream;                 // framing is forced to tcp
  std::size_t max_connections = 1000;    // this listener's cap; over it a socket is closed at once
  std::size_t read_chunk = 16384;        // bytes per read (one buffer per listener, not per connection)
  std::size_t max_write_queue = 262144;  // bytes queued for a peer before it is a slow reader
  std::chrono::milliseconds write_timeout{10000};  // flush before close may take this long
  // SO_REUSEPORT: each worker binds its own acceptor to the same address and the kernel spreads
  // connections across them; a connection then lives on the worker that accepted it.
  bool reuse_port = false;
  // coaps+tcp: every connection runs TLS (a TlsFilter over this SSL_CTX, which the caller keeps
  // alive) before RFC 8323; the session is `connecting` until the handshake finished.
  ssl_ctx_st* tls = nullptr;
  // coap+ws / coaps+ws: every connection is a WebSocket (RFC 8323 §4: upgrade on /.well-known/coap
  // with subprotocol `coap`, then one binary message per frame) over TCP or TLS.
  bool websocket = false;
  // TLS handshake and WebSocket upgrade together must finish within this.
  std::chrono::milliseconds handshake_timeout{30000};
};

class TcpStreamListener {
 public:
  class Host {
   public:
    virtual ~Host() = default;
    // Last say on a new connection (sessions.max): false closes it at once, counted as refused.
    virtual bool admit(const Address& remote) { (void)remote; return true; }
    virtual void opened(StreamLink& link) = 0;                    // session state connecting (TLS) or csm
    // TLS or WebSocket only: the transport is up (TLS handshake finished: link.tls() is set;
    // WebSocket upgraded), our CSM goes out next. false: the credentials are not accepted after
    // all; the connection ends with tls_failed.
    virtual bool secured(StreamLink& link) { (void)link; return true; }
    // coaps+tcp / coaps+ws: whether new links read the PSK identity their client names
    // (TlsPskIdentity) before the handshake needs its key (dtls.psk.lookup).
    virtual bool reads_psk_identity() const { return false; }
    // The client named `identity`: true holds the link's incoming bytes (at most max_held_bytes,
    // beyond which it ends with tls_failed) until the Host calls StreamLink::resume; false goes on.
    virtual bool wait_for_key(StreamLink& link, std::string_view identity) {
      (void)link, (void)identity;
      return false;
    }
    virtual void established(StreamLink& link, const coap::Csm& peer) = 0;
    virtual void deliver(StreamLink& link, const coap::MessageView& message, StreamTime now) = 0;
    virtual void closed(StreamLink& link, StreamClose reason) = 0;  // the link goes away after this
    virtual void refused(StreamLink& link, StreamRefusal refusal) = 0;
  };

  // What the listener itself refused or cut, for the metrics.
  struct Counters {
    std::uint64_t accepted = 0;
    std::uint64_t refused_over_cap = 0;  // max_connections or Host::admit
    std::uint64_t slow_readers = 0;      // write queue over max_write_queue: aborted
    std::uint64_t flush_timeouts = 0;    // closed before the last frames could be written
    std::uint64_t tls_handshakes = 0;    // TLS handshakes completed
  };

  // Documented bound (README): a TLS connection's bytes held while its key is looked up.
  static constexpr std::size_t max_held_bytes = 65536;

  TcpStreamListener(boost::asio::io_context& ioc, TcpListenerSettings settings, Host& host);
  // Destroy only when the io_context no longer runs (its pending handlers point here).
  ~TcpStreamListener();
  TcpStreamListener(const TcpStreamListener&) = delete;
  TcpStreamListener& operator=(const TcpStreamListener&) = delete;

  // Binds (port 0 picks one) and starts accepting.
  std::error_code listen(const Address& address);
  std::uint16_t port() const;
  // Stops accepting and closes every connection (closed(aborted) for each still open).
  void stop();
  std::size_t connections() const;  // sockets still held, closing ones included
  const Counters& counters() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace coapgw::transport
