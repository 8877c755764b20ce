// Name tables of the label enums; see labels.hpp.
#include "metrics/labels.hpp"

#include <ostream>

namespace coapgw::metrics {

namespace {

constexpr std::array<std::string_view, count<Proto>> proto_names{"udp", "dtls", "tcp", "tls", "ws", "wss"};
constexpr std::array<std::string_view, count<SessionType>> type_names{"client", "server", "hello"};
constexpr std::array<std::string_view, count<SessionState>> state_names{"none", "connecting", "handshake",
                                                                        "csm", "established"};
constexpr std::array<std::string_view, count<MsgType>> msg_type_names{"con", "non", "ack", "rst"};
constexpr std::array<std::string_view, count<CloseReason>> close_names{
    "idle_timeout", "evicted", "peer_closed", "tls_failed", "handshake_timeout", "disconnected", "shutdown",
    "revoked"};
constexpr std::array<std::string_view, count<HandshakeResult>> handshake_names{"ok", "failed", "timeout",
                                                                               "rejected", "backoff", "resumed"};
constexpr std::array<std::string_view, count<AdminReject>> admin_reject_names{"connection_limit", "too_large",
                                                                              "timeout"};
constexpr std::array<std::string_view, count<UpstreamOutcome>> outcome_names{
    "ok", "upstream_error", "connect_failed", "timeout", "overloaded", "bad_response", "not_implemented"};
constexpr std::array<std::string_view, count<BadReason>> bad_reason_names{
    "too_short", "bad_version", "bad_token_length", "truncated_token", "reserved_nibble", "truncated_option",
    "option_number_overflow", "payload_marker_without_payload", "too_many_options", "empty_with_content",
    "oversize", "empty_non", "unexpected_response", "reserved_code", "unexpected_ack", "message_id_reused",
    "outstanding_full",
    "proxy_unsupported", "wrong_authority", "bad_path",
    "body_too_large", "reassemblies_full", "reassemblies_session_full", "block_cache_full",
    "block_cache_session_full",
    "session_table_full", "dtls_bad_record", "dtls_no_session", "dtls_malformed_hello", "handshakes_per_ip",
    "hello_rate_limited", "hello_for_live_session"};
constexpr std::array<std::string_view, count<DownlinkOutcome>> downlink_outcome_names{
    "answered", "timeout", "queued", "expired", "cancelled", "rejected", "no_session"};
constexpr std::array<std::string_view, count<ApiReject>> api_reject_names{
    "connection_limit", "too_large", "timeout", "unauthorized", "bad_request"};
// The last enumerator must be the last name: a reason added to the enum without a name fails here.
static_assert(index(BadReason::hello_for_live_session) + 1 == count<BadReason>);
static_assert(index(UpstreamOutcome::not_implemented) + 1 == count<UpstreamOutcome>);
static_assert(index(HandshakeResult::resumed) + 1 == count<HandshakeResult>);
static_assert(index(DownlinkOutcome::no_session) + 1 == count<DownlinkOutcome>);
static_assert(index(ApiReject::bad_request) + 1 == count<ApiReject>);

template <typename E, std::size_t N>
std::string_view lookup(const std::array<std::string_view, N>& names, E e) {
  return index(e) < N ? names[index(e)] : std::string_view{};
}

using P = Proto;
using T = SessionType;
using S = SessionState;
constexpr SessionSeries series[] = {
    {P::udp, T::server, S::established},
    {P::udp, T::client, S::established},
    {P::dtls, T::server, S::handshake},
    {P::dtls, T::server, S::established},
    {P::dtls, T::client, S::none},
    {P::dtls, T::client, S::handshake},
    {P::dtls, T::client, S::established},
    {P::dtls, T::hello, S::handshake},
    {P::tcp, T::server, S::csm},
    {P::tcp, T::server, S::established},
    {P::tcp, T::client, S::established},
    {P::tls, T::server, S::connecting},
    {P::tls, T::server, S::csm},
    {P::tls, T::server, S::established},
    {P::tls, T::client, S::established},
    {P::ws, T::server, S::connecting},
    {P::ws, T::server, S::csm},
    {P::ws, T::server, S::established},
    {P::ws, T::client, S::established},
    {P::wss, T::server, S::connecting},
    {P::wss, T::server, S::csm},
    {P::wss, T::server, S::established},
    {P::wss, T::client, S::established},
};

}  // namespace

std::string_view name(Proto v) { return lookup(proto_names, v); }
std::string_view name(SessionType v) { return lookup(type_names, v); }
std::string_view name(SessionState v) { return lookup(state_names, v); }
std::string_view name(MsgType v) { return lookup(msg_type_names, v); }
std::string_view name(CloseReason v) { return lookup(close_names, v); }
std::string_view name(HandshakeResult v) { return lookup(handshake_names, v); }
std::string_view name(AdminReject v) { return lookup(admin_reject_names, v); }
std::string_view name(UpstreamOutcome v) { return lookup(outcome_names, v); }
std::string_view name(BadReason v) { return lookup(bad_reason_names, v); }
std::string_view name(DownlinkOutcome v) { return lookup(downlink_outcome_names, v); }
std::string_view name(ApiReject v) { return lookup(api_reject_names, v); }

std::ostream& operator<<(std::ostream& out, UpstreamOutcome v) { return out << name(v); }
std::ostream& operator<<(std::ostream& out, BadReason v) { return out << name(v); }

std::span<const SessionSeries> session_series() { return series; }

}  // namespace coapgw::metrics
