// coapgw::server bad input — the coapgw_bad_messages_total reason of a datagram the codec refused or
// the message layer reported. The codec (coap/) and the layer (exchange/) know nothing of metrics;
// this maps their ParseError and Anomaly onto the one list of reasons (metrics/labels.hpp), under
// the same names.
#pragma once

#include <array>
#include <cstddef>

#include "coap/message.hpp"
#include "exchange/layer.hpp"
#include "metrics/labels.hpp"

namespace coapgw::server {

// `error` is not ParseError::ok (callers count only refused datagrams).
constexpr metrics::BadReason bad_reason(coap::ParseError error) {
  using E = coap::ParseError;
  using R = metrics::BadReason;
  switch (error) {
    case E::too_short: return R::too_short;
    case E::bad_version: return R::bad_version;
    case E::bad_token_length: return R::bad_token_length;
    case E::truncated_token: return R::truncated_token;
    case E::reserved_nibble: return R::reserved_nibble;
    case E::truncated_option: return R::truncated_option;
    case E::option_number_overflow: return R::option_number_overflow;
    case E::payload_marker_without_payload: return R::payload_marker_without_payload;
    case E::too_many_options: return R::too_many_options;
    case E::empty_with_content: return R::empty_with_content;
    case E::ok: break;
  }
  return R::too_short;  // not reached for a refused datagram
}

// What the message layer refused or ignored, under its metric reason (the same names, indexed in
// exchange::Anomaly's order).
constexpr metrics::BadReason bad_reason(exchange::Anomaly what) {
  using R = metrics::BadReason;
  constexpr std::array<R, 6> by_anomaly{R::empty_non,       R::unexpected_response, R::reserved_code,
                                        R::unexpected_ack,  R::message_id_reused,   R::outstanding_full};
  static_assert(static_cast<std::size_t>(exchange::Anomaly::outstanding_full) + 1 == by_anomaly.size());
  return by_anomaly[static_cast<std::size_t>(what)];
}

}  // namespace coapgw::server
