// coapgw::metrics labels — every label value the gateway exports, as enums with one name table
// each, and the (proto, type, state) combinations a session can be in.
//
// Code that counts something names it with an enumerator, never with a string: the Metrics object
// resolves one Prometheus child per enumerator at start-up, so the data path indexes an array.
// This header has no Prometheus (or other) dependency, so modules that only produce a label value
// (the upstream clients report an UpstreamOutcome) include it without pulling in the registry.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <span>
#include <string_view>

namespace coapgw::metrics {

// Label values are the enumerator names.
enum class Proto : std::uint8_t { udp, dtls, tcp, tls, ws, wss };
enum class SessionType : std::uint8_t { client, server, hello };
enum class SessionState : std::uint8_t { none, connecting, handshake, csm, established };
enum class MsgType : std::uint8_t { con, non, ack, rst };
enum class CloseReason : std::uint8_t {
  idle_timeout, evicted, peer_closed, tls_failed, handshake_timeout, disconnected, shutdown, revoked
};
// backoff: refused because the address's handshakes kept failing (dtls.handshake_backoff).
// resumed: completed as an abbreviated handshake with an RFC 5077 ticket (dtls.tickets).
enum class HandshakeResult : std::uint8_t { ok, failed, timeout, rejected, backoff, resumed };
// Why the admin listener turned a client away (coapgw_admin_rejected_total).
enum class AdminReject : std::uint8_t { connection_limit, too_large, timeout };

// coapgw_upstream_requests_total{outcome}: how a forwarded request ended.
enum class UpstreamOutcome : std::uint8_t {
  ok,               // the upstream answered (any 2.xx-4.xx)
  upstream_error,   // the upstream answered 5.xx, reset, or failed after the request went out
  connect_failed,   // no connection (refused, unreachable, DTLS handshake failed)
  timeout,          // no answer within the route timeout
  overloaded,       // the route's max_in_flight bound was reached (5.03)
  bad_response,     // the upstream's answer could not be relayed (malformed, too large)
  not_implemented,  // the request cannot be expressed to this upstream (method, Accept)
};

// coapgw_bad_messages_total{reason}: input dropped or refused. One list; README lists them too.
enum class BadReason : std::uint8_t {
  // coap::ParseError, same names (server/bad_input.hpp maps them).
  too_short, bad_version, bad_token_length, truncated_token, reserved_nibble, truncated_option,
  option_number_overflow, payload_marker_without_payload, too_many_options, empty_with_content,
  // The message layer.
  oversize, empty_non, unexpected_response, reserved_code, unexpected_ack, message_id_reused,
  outstanding_full,
  // Request target checks (server/request_target.hpp).
  proxy_unsupported, wrong_authority, bad_path,
  // Block-wise bounds.
  body_too_large, reassemblies_full, reassemblies_session_full, block_cache_full,
  block_cache_session_full,
  // Sessions and DTLS.
  session_table_full, dtls_bad_record, dtls_no_session, dtls_malformed_hello, handshakes_per_ip,
  hello_rate_limited, hello_for_live_session,
};

// coapgw_downlink_requests_total{outcome}: how a backend's request to a device ended (lib/api).
// no_session: no reachable session and no queue_for (404); not in DESIGN's list, added beside it.
enum class DownlinkOutcome : std::uint8_t {
  answered, timeout, queued, expired, cancelled, rejected, no_session
};
// Why the backend API listener turned a client away (coapgw_api_rejected_total).
enum class ApiReject : std::uint8_t { connection_limit, too_large, timeout, unauthorized, bad_request };

std::string_view name(Proto);
std::string_view name(SessionType);
std::string_view name(SessionState);
std::string_view name(MsgType);
std::string_view name(CloseReason);
std::string_view name(HandshakeResult);
std::string_view name(AdminReject);
std::string_view name(UpstreamOutcome);
std::string_view name(BadReason);
std::string_view name(DownlinkOutcome);
std::string_view name(ApiReject);

// The name, for test failure messages and logs.
std::ostream& operator<<(std::ostream& out, UpstreamOutcome v);
std::ostream& operator<<(std::ostream& out, BadReason v);

// Number of enumerators of each label enum.
template <typename E>
inline constexpr std::size_t count = 0;
template <> inline constexpr std::size_t count<Proto> = 6;
template <> inline constexpr std::size_t count<SessionType> = 3;
template <> inline constexpr std::size_t count<SessionState> = 5;
template <> inline constexpr std::size_t count<MsgType> = 4;
template <> inline constexpr std::size_t count<CloseReason> = 8;
template <> inline constexpr std::size_t count<HandshakeResult> = 6;
template <> inline constexpr std::size_t count<AdminReject> = 3;
template <> inline constexpr std::size_t count<UpstreamOutcome> = 7;
template <> inline constexpr std::size_t count<BadReason> = 32;
template <> inline constexpr std::size_t count<DownlinkOutcome> = 7;
template <> inline constexpr std::size_t count<ApiReject> = 5;

template <typename E>
constexpr std::size_t index(E e) {
  return static_cast<std::size_t>(e);
}

// The enumerator whose name is `text`, nullopt for none.
template <typename E>
std::optional<E> from_name(std::string_view text) {
  for (std::size_t i = 0; i < count<E>; ++i)
    if (name(static_cast<E>(i)) == text) return static_cast<E>(i);
  return std::nullopt;
}

// One coapgw_sessions series.
struct SessionSeries {
  Proto proto;
  SessionType type;
  SessionState state;
};

// The combinations a session can be in, which are exactly the series coapgw_sessions exports:
//   udp  server  established              plain CoAP needs no handshake: created established
//   udp  client  established              a server session turned client (Call-Home), or our own
//   dtls server  handshake, established   a session exists once the cookie exchange succeeded
//   dtls client  none, handshake, established   none: not connected (before or between handshakes)
//   dtls hello   handshake                the stateless cookie exchange commits no session: always 0
//   tcp|tls|ws|wss server  connecting, csm, established   RFC 8323: connecting until the TLS
//                          handshake or WebSocket upgrade is done, csm until the peer's CSM
//   tcp|tls|ws|wss client  established    a stream session turned client (downlink)
std::span<const SessionSeries> session_series();

}  // namespace coapgw::metrics
