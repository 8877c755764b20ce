// coapgw::dtls::detail::HandshakeState — the part of an Engine that exists only
// until record protection moves to the lean layer: the OpenSSL SSL object, the
// BIO's pipe, the handshake deadline and what OpenSSL's callbacks observed.
// Freed (with the SSL object) at the switch, so an established session keeps
// none of it. Internal header.
#pragma once

#include <chrono>

#include "dtls/cid_handshake.hpp"
#include "dtls/datagram_pipe.hpp"

struct ssl_st;

namespace coapgw::dtls::detail {

struct HandshakeState {
  using time_point = std::chrono::steady_clock::time_point;

  explicit HandshakeState(ssl_st* ssl_object) : ssl(ssl_object) {}
  ~HandshakeState();  // SSL_free
  HandshakeState(const HandshakeState&) = delete;
  HandshakeState& operator=(const HandshakeState&) = delete;

  ssl_st* ssl;
  DatagramPipe pipe;
  CidHandshake cid;  // RFC 9146: what was negotiated, and the epoch-1 record translation
  time_point deadline;
  time_point last_now;
  bool psk_identity_unknown = false;
  bool peer_ccs_seen = false;
  bool peer_finished_seen = false;
  bool peer_epoch1_handshake_seen = false;
  bool fatal_alert_received = false;
  bool switch_pending = false;  // application data came with the peer's Finished
  bool switch_failed = false;   // the lean layer was tried and refused; stay on the SSL object
};

}  // namespace coapgw::dtls::detail
