// coapgw::server request-target checks — what a request asks of the gateway beyond its path
// (RFC 7252 §5.4.1, §5.7.2, §5.10.1, §5.10.2, §6.4), decided before the route is looked up.
//
// The gateway is an origin-facing reverse proxy, not a forward proxy: Proxy-Uri and Proxy-Scheme
// answer 5.05. Uri-Host and Uri-Port must name the gateway (rule below), a Uri-Path segment that could
// act as a dot-segment is refused (coap::has_unsafe_path_segment), and the conditional options are
// copied into the forwarded request so that every upstream honours or refuses them. Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "coap/message.hpp"
#include "common/address.hpp"
#include "upstream/forward.hpp"
#include "metrics/labels.hpp"

namespace coapgw::server {

struct Refusal {
  std::uint8_t code;           // CoAP response code byte
  metrics::BadReason reason;   // coapgw_bad_messages_total{reason}
  std::string_view diagnostic; // diagnostic payload (RFC 7252 §5.5.2)
};

// `local` is the address and port the request arrived on (port 0 / unspecified: unknown).
// - Proxy-Uri or Proxy-Scheme present -> 5.05, reason "proxy_unsupported".
// - Uri-Host that is an IP literal ("192.0.2.1", "::1" or "[::1]") different from the local address
//   -> 4.04, reason "wrong_authority". A registered name is accepted: the gateway cannot know every
//   name it is reached by.
// - Uri-Port different from the local port -> 4.04, reason "wrong_authority".
// - A dot-segment-like Uri-Path -> 4.00, reason "bad_path".
std::optional<Refusal> check_request_target(const coap::MessageView& m, const Address& local);

// If-Match, If-None-Match and ETag options into the forwarded request.
void copy_conditionals(const coap::MessageView& m, upstream::ForwardRequest& request);

}  // namespace coapgw::server
