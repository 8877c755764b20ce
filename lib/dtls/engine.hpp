// coapgw::dtls::Engine — one DTLS 1.2 session, datagrams in and out, in either role.
//
// Server role: created by ServerContext::on_hello once a ClientHello carried a valid cookie.
// Client role (coaps:// upstreams): created by ClientContext::connect, which puts the ClientHello
// in the Output. Both roles run the same code: the OpenSSL SSL object for the handshake
// (detail::HandshakeState) and, through an internal RecordLayer, the record protection of the
// established session. Once the peer has proven its keys (its first application record
// that authenticates after the handshake), protection moves to the lean AEAD
// layer and the SSL object is freed: an established engine then holds only
// keys, counters, the replay window and the identity (a few hundred bytes).
// Does no I/O and reads no clock: the caller passes `now` and sends what lands
// in Output::datagrams. The Context that created (or imported) an engine
// must outlive it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.hpp"
#include "common/secret.hpp"
#include "dtls/credentials.hpp"
#include "dtls/datagram_pipe.hpp"
#include "dtls/output.hpp"
#include "dtls/session_state.hpp"
#include "dtls/wire.hpp"

struct ssl_st;

namespace coapgw::dtls {

class Context;
class ServerContext;
class ClientContext;
namespace detail {
class RecordLayer;
class SslRecordLayer;
struct Callbacks;
struct HandshakeState;
}  // namespace detail

class Engine {
 public:
  enum class State : std::uint8_t { handshake, established, closed };
  using time_point = std::chrono::steady_clock::time_point;

  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void on_datagram(std::span<const std::byte> datagram, Output& out, time_point now);
  // One application_data record -> out.datagrams; false if not established or too large.
  // When the write sequence space is used up (close to 2^48) it sends
  // close_notify instead, closes (out.closed, Failure::sequence_exhausted) and returns false.
  bool send(std::span<const std::byte> plaintext, Output& out);
  // close_notify -> out.datagrams (when established); state closed.
  void close(Output& out);

  // When the worker must call on_timer next (nullopt = none).
  std::optional<time_point> next_timer() const;
  // Retransmits the last flight when due, or fails with handshake_timeout.
  void on_timer(Output& out, time_point now);

  State state() const { return state_; }
  const std::string& identity() const { return identity_; }
  std::span<const std::byte> psk_key() const;
  // Server role: the hint this server sends; client role: the hint the server sent.
  std::string_view psk_hint() const;
  const Address& peer() const { return peer_; }
  // What the peer authenticated with, to re-check against a reloaded configuration. Known once
  // established (a PSK as soon as its identity was looked up).
  Credentials credentials() const;
  // ServerContext::credentials_generation() when this handshake started (or the state was imported):
  // when it differs at establishment, the credentials were looked up before a reload and must be
  // checked again.
  std::uint64_t credentials_generation() const { return generation_; }
  // The SSL object; nullptr once record protection moved to the lean layer.
  ssl_st* native_handle() const;
  // True once record protection runs without the SSL object.
  bool lean() const;
  // RFC 9146: the Connection ID in the peer's records to us (the one we issued; empty when none
  // was negotiated), and the one we put in our records to the peer (empty: plain records).
  std::span<const std::byte> connection_id() const;
  std::span<const std::byte> peer_connection_id() const;
  std::size_t memory_estimate() const;
  // Established by an abbreviated handshake: an RFC 5077 ticket resumed an earlier session.
  bool resumed() const { return resumed_; }
  // Client role with ClientSettings::session_tickets: the session as OpenSSL serialises it
  // (i2d_SSL_SESSION, with the server's ticket), for ClientContext::connect to resume; empty when
  // the server sent no ticket. Holds the master secret: treat it as a key.
  const SecretBytes& resumption() const { return resumption_; }
  // Records dropped because they failed to authenticate, were replayed, were
  // malformed or came at another epoch (a plaintext alert aimed at an
  // established session; the peer's retransmitted last flight is not counted). They are dropped silently and never end the
  // session (RFC 6347 4.1.2.7): anyone can send them from the device's address.
  std::uint64_t bad_records() const { return bad_records_; }
  Failure failure() const { return failure_; }
  // Largest plaintext send() accepts (server role: one record fits one datagram; see Context).
  std::size_t max_plaintext() const;

  // Persistence (issue 8): the session's keys, counters, window and identity;
  // nullopt unless established and lean(), and in the client role. The write sequence is the next one
  // to use: whoever restores it must add a safety gap.
  std::optional<SessionState> export_state() const;
  // An established lean engine from saved state, its write sequence moved
  // forward by `write_seq_gap` (records sent after the export must not reuse a
  // nonce). nullptr if the state is inconsistent or too close to the end of
  // the sequence space.
  static std::unique_ptr<Engine> import_state(ServerContext& context, const SessionState& state,
                                              std::uint64_t write_seq_gap);

 private:
  friend class ServerContext;
  friend class ClientContext;
  friend struct detail::Callbacks;
  friend class detail::SslRecordLayer;

  Engine(Context& context, ssl_st* ssl, const Address& peer, time_point now);
  Engine(Context& context, const Address& peer);  // import: no handshake
  void start(Output& out, time_point now);
  void drive_handshake(Output& out);
  // Feeds a handshake-time datagram to OpenSSL (translating tls12_cid records) and drives the
  // handshake; returns the datagram as OpenSSL saw it (plain format).
  std::span<const std::byte> feed_handshake(std::span<const std::byte> datagram, Output& out);
  void on_established(Output& out);
  void keep_resumption();  // client role: the session and its ticket, for a later connect()
  void on_record(const wire::Record& record, Output& out);
  void fail(Failure failure, Output& out);
  void send_plaintext_alert(std::uint8_t description, Output& out);
  // Moves record protection to the lean layer and frees the SSL object, if
  // one of `proof`'s epoch-1 application records opens with the derived keys.
  void switch_to_lean(std::span<const std::byte> proof);

  Context* context_;
  std::unique_ptr<detail::HandshakeState> handshake_;  // null once lean
  std::unique_ptr<detail::RecordLayer> record_layer_;
  std::string identity_;
  std::string psk_key_;
  std::string psk_hint_;
  // Certificate sessions: the peer's chain as DER, leaf first; null for PSK sessions (which are
  // most of them: a pointer keeps them small).
  std::unique_ptr<std::vector<std::vector<std::byte>>> peer_certs_;
  std::uint64_t generation_ = 0;
  std::uint64_t bad_records_ = 0;
  Address peer_;
  State state_ = State::handshake;
  Failure failure_ = Failure::none;
  bool resumed_ = false;
  SecretBytes resumption_;
};

}  // namespace coapgw::dtls
