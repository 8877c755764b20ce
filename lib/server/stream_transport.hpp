// coapgw::server::StreamTransport — one worker's RFC 8323 listeners (`listen.coap_tcp`, `coaps_tcp`,
// `coap_ws`, `coaps_ws`) and the sessions of their connections.
//
// It owns the link between a connection and its session: a session of proto `tcp|tls|ws|wss` per
// accepted connection, keyed by (remote, local port, proto, listener), created in state `connecting`
// (TLS handshake, WebSocket upgrade; `csm` at once for plain TCP), `csm` once the transport is up
// (the identity of a TLS peer is the session's app data, as for DTLS) and `established` with the
// peer's CSM; the session counts against
// sessions.max like any other and is reclaimed or expired by the table like any other, which ends
// its connection with a Release. Whole messages go up through Host::deliver, re-encoded as RFC 7252
// NON messages with message id 0 (a stream has neither type nor id), to the same server-role entry
// the DTLS transport uses; the message layer is in reliable mode for these sessions (no dedup, ACK
// or retransmission). What the message layer sends back is turned into an RFC 8323 frame. Every
// connection ending, refusal and listener bound is counted (coapgw_stream_*_total). Sockets, framing
// and per-connection bounds are lib/transport's (TcpStreamListener, StreamConnection); this class
// knows sessions and metrics, not bytes on the wire. Boost.Asio stays in the .cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/address.hpp"
#include "dtls/settings.hpp"
#include "server/device_links.hpp"
#include "server/psk_lookup.hpp"
#include "server/stream_tls.hpp"
#include "session/session.hpp"
#include "transport/tcp_listener.hpp"

namespace boost::asio {
class io_context;
}
namespace prometheus {
class Counter;
}
namespace coapgw::metrics {
class Metrics;
}
namespace coapgw::session {
class Table;
}
namespace coapgw::config {
struct Config;
}

namespace coapgw::server {

class DeviceData;

struct StreamTransportSettings {
  std::vector<Address> tcp_listen;  // listen.coap_tcp
  std::vector<Address> tls_listen;  // listen.coaps_tcp
  std::vector<Address> ws_listen;   // listen.coap_ws
  std::vector<Address> wss_listen;  // listen.coaps_ws
  // Bounds of each listener and connection (stream.*; max_connections is this worker's share).
  transport::TcpListenerSettings tcp;
  // coaps+tcp, coaps+ws: the DTLS listener's credentials (dtls.psk, dtls.pki), set when there are TLS listeners.
  std::optional<dtls::ServerSettings> credentials;
};

// One worker's settings from the config (stream.*, coap.max_message_size, sessions.idle_timeout);
// stream.max_connections is split across the `workers`.
StreamTransportSettings stream_settings(const config::Config& config, unsigned workers);

class StreamTransport {
 public:
  class Host {
   public:
    virtual ~Host() = default;
    // One whole CoAP message of `s` in the RFC 7252 encoding (type NON, message id 0), as the DTLS
    // transport delivers its plaintexts.
    virtual void deliver(session::Session& s, std::span<const std::byte> message, session::TimePoint now) = 0;
    // The worker is draining: no new connections.
    virtual bool draining() const = 0;
    // A coaps+tcp session's identity (app data) is known: the downlink indexes it.
    virtual void identified(session::Session& s) = 0;
  };

  StreamTransport(boost::asio::io_context& io, StreamTransportSettings settings, Host& host, session::Table& table,
                  metrics::Metrics& metrics);
  // Destroy only when the io_context no longer runs.
  ~StreamTransport();
  StreamTransport(const StreamTransport&) = delete;
  StreamTransport& operator=(const StreamTransport&) = delete;

  // Binds one listener per address of listen.coap_tcp, coaps_tcp, coap_ws, coaps_ws (SO_REUSEPORT: every
  // worker binds the same addresses and the kernel spreads the connections); port 0 binds a free
  // port. Builds the TLS context first when there are TLS listeners.
  bool open(std::string* error);
  // Reload (worker thread): new PSK store and client CA for TLS; every coaps+tcp session whose key
  // or certificate no longer stands is closed with `revoked`. Returns how many.
  std::size_t apply_credentials(std::shared_ptr<const dtls::PskStore> store,
                                std::shared_ptr<const dtls::TrustStore> trust);
  // dtls.psk.lookup (stream_registry.cpp): a coaps+tcp / coaps+ws client naming an identity that
  // is neither in the local keys nor fresh in the registry cache has its bytes held while `lookup`
  // asks the registry; the PSK callback then reads the cache. Null: local keys only.
  void set_psk_lookup(PskLookup* lookup);
  // PskLookup's answer for `identity` (worker thread): the held connections go on, and the live
  // registry-keyed sessions of that identity that no longer stand (banned, unknown, another key)
  // end with `revoked`. `held` holds only the stream ones (Held::stream).
  void on_key_answer(const std::string& identity, const std::vector<PskLookup::Held>& held);
  std::vector<Address> bound_addresses(session::Proto proto) const;
  // The listeners whose devices have no authenticated identity (downlink `coap:<ip>:<port>`).
  std::vector<DeviceLinks::StreamEndpoint> plain_endpoints() const;

  static bool owns(const session::Session& s) { return session::is_reliable(s.proto()); }
  // A message of the message layer (RFC 7252 encoding) to the peer of `s`, as one frame. Empty
  // messages (ACK/RST) have no meaning on a stream and are dropped.
  void send(session::Session& s, std::span<const std::byte> message);
  // The table closed `s` (idle timeout, evicted, disconnected, shutdown): its connection ends with a
  // Release. Nothing when the connection ended first.
  void forget(session::Session& s);
  // Drain: Release on every connection (answers in flight still go out); new ones are refused.
  void begin_drain();
  // Stops accepting and aborts every connection (their sessions close with `shutdown`).
  void stop();
  // Adds the listeners' counters to the metrics (the worker's housekeeping tick).
  void flush_metrics();
  std::size_t connections() const;
  // TLS handshakes completed since the last call (the worker gives freed handshake memory back).
  std::uint64_t take_handshakes_completed();

 private:
  struct Listener;
  friend struct Listener;
  void opened(Listener& l, transport::StreamLink& link);
  void established(Listener& l, transport::StreamLink& link);
  bool secured(Listener& l, transport::StreamLink& link);
  void deliver(Listener& l, transport::StreamLink& link, const coap::MessageView& m, transport::StreamTime now);
  void closed(Listener& l, transport::StreamLink& link, transport::StreamClose reason);
  void refused(Listener& l, transport::StreamLink& link, transport::StreamRefusal refusal);
  session::Session* session_of(const Listener& l, const transport::StreamLink& link) const;
  bool wait_for_key(Listener& l, transport::StreamLink& link, std::string_view identity);
  void note_registry_session(session::Session& s, const StreamTls::Peer& peer, DeviceData& device);
  void forget_registry_session(session::Session& s);

  boost::asio::io_context& io_;
  StreamTransportSettings settings_;
  Host& host_;
  session::Table& table_;
  metrics::Metrics& metrics_;
  std::unique_ptr<StreamTls> tls_;  // coaps+tcp listeners' SSL_CTX
  PskLookup* lookup_ = nullptr;     // the worker's (owned by its DTLS transport); null without one
  std::vector<std::unique_ptr<Listener>> listeners_;
  // What each coaps+tcp session authenticated (reload re-checks it), by session id.
  std::unordered_map<std::uint64_t, StreamTls::Peer> peers_;
  // Each open connection's session, both ways. A session leaves both maps before it is closed.
  std::unordered_map<std::uint64_t, transport::StreamLink*> link_of_;  // by session id
  bool stopping_ = false;
  std::uint64_t handshakes_taken_ = 0;
  std::vector<std::byte> scratch_;                                     // one re-encoded message
};

}  // namespace coapgw::server
