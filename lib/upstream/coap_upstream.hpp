// coap:// upstreams — coapgw as a CoAP client (RFC 7252, RFC 7959) of one backend.
//
// Each CoapUpstream belongs to one worker and does all its I/O on that worker's io_context with one
// UDP socket connected to the backend (so ICMP port-unreachable surfaces as connect_failed): the
// socket, and for coaps:// the DTLS connection, are gateway/coap_connection.*. It talks through a
// client session of its own session::Table (own Budget, one session per upstream address, refcount 1
// while the upstream lives, plus one reference per exchange in flight), and the message layer is
// lib/exchange in the client role: every forwarded request gets a fresh 8-byte random token and the
// session's next message id, goes out as CON and is retransmitted per RFC 7252 §4.2 until ACKed;
// piggybacked and separate responses are matched by token. Block1 carries payloads above
// block_size, Block2 answers are fetched whole (bounded) before the caller is answered. This file is
// the forwarding glue: ForwardRequest to exchange::Request, the answer or failure to ForwardResponse,
// the bounds below, and the one timer the exchange layer asks for.
//
// coaps:// runs the same client over the DTLS engine in the client role (dtls::ClientContext with the
// route's PSK, one dtls::Engine per connection) on the same socket: the handshake starts on first use
// while requests queue (parked in the exchange layer, bounded), and a failed handshake answers them
// 5.02 "connect_failed". A peer close_notify, fatal alert or ICMP unreachable drops the connection; the
// next request handshakes again. Asio and OpenSSL stay in the .cpp files.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "exchange/transmission.hpp"
#include "upstream/forward.hpp"

namespace boost::asio {
class io_context;
}

namespace coapgw::upstream {

// RFC 7252 §4.8 transmission parameters (the same as the device side's) and the client's own bounds
// (config `coap:` section).
struct CoapClientSettings {
  exchange::TransmissionParameters transmission;
  std::size_t block_size = 1024;              // Block1 size; payloads above it go block-wise
  std::size_t max_body_bytes = 1024 * 1024;   // Block2 answers beyond it -> 5.02 bad_response
  std::size_t max_exchanges = 1024;           // exchanges in flight per upstream; beyond -> 5.03
  // coaps: a handshake not done within min(handshake_timeout, route timeout / 2) fails its queued
  // requests with 5.02 "connect_failed" (half the route timeout so that this answer beats the route's
  // 5.04: a wrong key shows as silence, DTLS drops records it cannot authenticate).
  std::chrono::milliseconds handshake_timeout{10000};
  std::size_t max_handshake_queue = 64;       // requests waiting for the handshake; beyond -> 5.03
};

struct CoapTarget {
  bool secure = false;                 // coaps://
  std::string host;                    // "127.0.0.1", "::1", "backend.example"
  std::uint16_t port = 5683;           // default 5683 (coap) / 5684 (coaps)
  std::vector<std::string> base_path;  // decoded Uri-Path segments of the URL, sent before the request's
};

// Parses "coap://host[:port][/base]" and "coaps://..."; nullopt if malformed.
std::optional<CoapTarget> parse_coap_target(std::string_view url);

// Uri-Path segments of "/a/b%20c" -> {"a", "b c"}; "/" -> {}.
std::vector<std::string> split_path(std::string_view path);
// Uri-Query options of "a=1&b=%26" -> {"a=1", "b=&"}; "" -> {}.
std::vector<std::string> split_query(std::string_view query);

// Resolves the host at start-up. Throws std::runtime_error on a malformed URL, an unresolvable host,
// or coaps:// without a usable PSK (spec.psk_identity / spec.psk_key).
std::unique_ptr<Upstream> make_coap_upstream(boost::asio::io_context& io, const RouteSpec& spec,
                                             const CoapClientSettings& settings = {});

}  // namespace coapgw::upstream
