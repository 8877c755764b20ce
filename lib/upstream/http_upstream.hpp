// http:// and https:// upstreams (RFC 8075 mapping, Boost.Beast underneath).
//
// Each upstream keeps a keep-alive connection pool on its worker's io_context:
// idle connections are reused, at most RouteSpec::max_in_flight connections
// exist at once, a connection that timed out or failed is closed and never
// reused. Beast and OpenSSL stay inside http_upstream.cpp.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "upstream/forward.hpp"

namespace boost::asio {
class io_context;
}

namespace coapgw::upstream {

struct HttpTarget {
  bool tls = false;
  std::string host;         // "127.0.0.1", "::1", "backend.example"
  std::string port;         // "8000"; defaults 80 / 443
  std::string base_path;    // "" or "/v1" (no trailing '/')
  std::string host_header;  // "127.0.0.1:8000", "[::1]:8000", "backend.example"
};

// Parses "http://host[:port][/base]" and "https://..."; nullopt if malformed.
std::optional<HttpTarget> parse_http_target(std::string_view url);

// Throws std::runtime_error on a malformed URL or an unreadable ca_file.
std::unique_ptr<Upstream> make_http_upstream(boost::asio::io_context& io, const RouteSpec& spec);

}  // namespace coapgw::upstream
