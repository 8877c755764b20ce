// The stream: section and the RFC 8323 listeners (DESIGN "CoAP over TCP, TLS and WebSockets").
#include "config/sections.hpp"

namespace coapgw::config::detail {

void parse_stream(Reader& r, const YAML::Node& node, Config& config) {
  StreamConfig& out = config.stream;
  if (r.map(node, "stream",
            {"max_connections", "max_in_flight", "csm_timeout", "frame_timeout", "max_write_queue", "write_timeout"})) {
    r.integer(node, "max_connections", "stream", 1, 10'000'000, out.max_connections);
    r.integer(node, "max_in_flight", "stream", 1, 100'000, out.max_in_flight);
    r.duration(node, "csm_timeout", "stream", true, out.csm_timeout);
    r.duration(node, "frame_timeout", "stream", true, out.frame_timeout);
    r.integer(node, "max_write_queue", "stream", 4096, 1 << 30, out.max_write_queue);
    r.duration(node, "write_timeout", "stream", true, out.write_timeout);
  }
  // Duplicate stream listen addresses are reported with the others (check_listen_duplicates).
}

}  // namespace coapgw::config::detail
