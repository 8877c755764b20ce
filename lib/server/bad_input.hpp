// coapgw::server bad input — the coapgw_bad_messages_total reason of a datagram the codec refused.
// The codec (coap/) knows nothing of metrics; this maps its ParseError onto the one list of reasons
// (metrics/labels.hpp), under the same names.
#pragma once

#include "coap/message.hpp"
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

}  // namespace coapgw::server
