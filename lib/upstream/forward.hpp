// coapgw::upstream forwarding vocabulary — what a worker hands to an upstream
// and what comes back.
//
// These types are the seam between the CoAP side (codec, sessions, workers)
// and the backends (HTTP, file sink, later CoAP). They carry no protocol
// objects, only decoded values, so neither side needs the other's headers.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/secret.hpp"
#include "metrics/labels.hpp"

namespace coapgw::upstream {

// How a forward ended: the outcome label of coapgw_upstream_requests_total.
using Outcome = metrics::UpstreamOutcome;

// CoAP code byte from class and detail: coap_code(2, 5) == 0x45 ("2.05").
constexpr std::uint8_t coap_code(unsigned cls, unsigned detail) {
  return static_cast<std::uint8_t>((cls << 5) | detail);
}

struct ForwardResponse;

// Observe relayed through a CoAP upstream (RFC 7641): a device's GET/FETCH with Observe=0 carries a
// hook. A coap:// upstream then registers with the upstream as one multi-answer request; the first
// answer comes through ForwardDone (with the upstream's Observe option among `options` when it
// registered), later notifications through `notify`, both on the worker's io_context. Upstreams
// that cannot observe (http, file) ignore the hook: their one answer has no Observe option.
struct ObserveHook {
  std::function<void(ForwardResponse)> notify;  // set by the worker: each later notification
  std::function<void()> ended;                  // set by the worker: the upstream ended it (error, lost)
  std::function<void()> cancel;                 // set by the upstream when registered: forget it there
  // Set by the worker when its relay ends (any time, before the first answer too). An upstream
  // that sees it at an answer forgets the registration there (RFC 7641 §3.6) instead of keeping it.
  bool abandoned = false;
};

struct ForwardRequest {
  std::string method;            // "GET","POST","PUT","DELETE","FETCH","PATCH","IPATCH"
  std::string path;              // Uri-Path joined, starting with "/", percent-encoded as needed
  std::string query;             // Uri-Query joined with '&', "" if none
  std::optional<std::uint16_t> content_format;  // CoAP Content-Format of the payload
  std::optional<std::uint16_t> accept;
  // Conditional-request options (RFC 7252 §5.10.6, §5.10.8): every upstream honours them or refuses
  // the request, none drops them. If-Match values are opaque entity-tags, an empty one meaning "the
  // resource exists"; `etags` are the ETag options of a request (the representations the device
  // holds, a GET/FETCH becomes conditional on them).
  std::vector<std::vector<std::byte>> if_match;
  bool if_none_match = false;
  std::vector<std::vector<std::byte>> etags;
  std::vector<std::byte> payload;
  std::string identity;          // "" on plain CoAP
  std::string tenant;            // the device registry's tenant (dtls.psk.lookup); "" when none
  std::string remote;            // "ip:port" of the device
  std::uint64_t session_id = 0;
  std::optional<std::uint32_t> observe;  // a device's notification (RFC 7641): its Observe number
  std::shared_ptr<ObserveHook> observer;  // a device's registration (Observe=0) to relay; see ObserveHook
};

struct ForwardResponse {
  std::uint8_t code = 0;         // CoAP code byte, e.g. 0x45 for 2.05
  std::optional<std::uint16_t> content_format;
  std::optional<std::uint32_t> max_age;  // freshness (or, with 5.03, when to retry)
  std::vector<std::byte> payload;
  // Further response options relayed from a CoAP upstream (ETag, Location-Path, Location-Query), in
  // wire order; content_format and max_age stay in their own fields.
  std::vector<std::pair<std::uint16_t, std::vector<std::byte>>> options;
  Outcome outcome = Outcome::ok;
};

// Called exactly once, on the worker's io_context, never from inside forward().
using ForwardDone = std::function<void(ForwardResponse)>;

struct RouteSpec {
  std::string prefix;             // "/api": matches "/api" and "/api/x", not "/apix"
  std::string upstream;           // http://, https://, coap://, coaps://, file:PATH
  bool strip_prefix = false;
  std::chrono::milliseconds timeout{5000};
  std::size_t max_in_flight = 64;  // also bounds the HTTP connection pool
  std::string ca_file;             // https: CA bundle; "" = system store
  std::string psk_identity;        // coaps: PSK identity presented to the upstream
  SecretString psk_key;            // coaps: raw key bytes, wiped when let go
};

// One backend. Instances belong to one worker and do all their I/O on its
// io_context, so no method needs a lock.
class Upstream {
 public:
  virtual ~Upstream() = default;
  virtual void forward(ForwardRequest request, ForwardDone done) = 0;
  virtual void reopen() {}    // file sink: SIGHUP log rotation
  virtual void shutdown() {}  // close connections; pending requests are answered
};

}  // namespace coapgw::upstream
