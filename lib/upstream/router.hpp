// coapgw::upstream::Router — the route table of one worker.
//
// Built once from the config's routes (a reload builds a new Router and swaps
// it whole), it owns one Upstream per route, picks the route for a Uri-Path
// (first prefix match wins) and wraps every forward with the route's bounds:
// at most max_in_flight requests (beyond: 5.03 with Max-Age 5, "overloaded")
// and an answer within timeout (else 5.04, "timeout"). Metrics are recorded by
// the caller from ForwardResponse::outcome, with per-route children it resolves
// when it builds the Router (Match::index names the route).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "upstream/coap_upstream.hpp"
#include "upstream/forward.hpp"

namespace boost::asio {
class io_context;
}

namespace coapgw::upstream {

// Max-Age sent with 5.03 when a route's concurrency bound is reached.
inline constexpr std::uint32_t overloaded_max_age_s = 5;

class Router {
 public:
  // Builds HTTP/HTTPS/file/CoAP upstreams (coap:// and coaps:// clients use
  // `coap`, the config's coap: transmission parameters; coaps needs the route's
  // psk_identity/psk_key). Throws std::runtime_error on bad specs.
  Router(boost::asio::io_context& io, std::vector<RouteSpec> routes, CoapClientSettings coap = {});
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  struct Match {
    const RouteSpec* route;
    Upstream* upstream;
    std::string upstream_path;  // path after the strip_prefix rule, starts with '/'
    std::size_t index = 0;      // position of the route in the table (as built from the specs)
  };
  // First prefix match wins; prefix "/api" matches "/api" and "/api/x", not "/apix".
  std::optional<Match> match(std::string_view path) const;
  std::vector<std::string> prefixes() const;  // for /.well-known/core

  // Forwards with request.path replaced by match.upstream_path. `done` runs
  // exactly once on the io_context, never inside this call.
  void forward(const Match& match, ForwardRequest request, ForwardDone done);

  void reopen_files();
  void shutdown();

 private:
  struct Route;
  boost::asio::io_context& io_;
  std::vector<std::unique_ptr<Route>> routes_;
};

}  // namespace coapgw::upstream
