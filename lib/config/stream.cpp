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
  const auto& listen = config.listen;
  // Served so far: coap+tcp. The other keys are part of the contract and refused until served, so
  // that a config naming them does not silently listen on nothing.
  const std::pair<const std::vector<Address>*, const char*> not_served[] = {
      {&listen.coaps_tcp, "listen.coaps_tcp"}, {&listen.coap_ws, "listen.coap_ws"}, {&listen.coaps_ws, "listen.coaps_ws"}};
  for (const auto& [list, path] : not_served)
    if (!list->empty()) r.add(path, "not served by this build yet (listen.coap_tcp is)");
  // TCP may share an address with a UDP listener (coap and coap+tcp both default to 5683), not
  // with another TCP one.
  for (std::size_t i = 0; i < listen.coap_tcp.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (listen.coap_tcp[i] == listen.coap_tcp[j] && listen.coap_tcp[i].port() != 0)
        r.add(index("listen.coap_tcp", i), "duplicate listen address " + listen.coap_tcp[i].to_string() +
                                               " (also " + index("listen.coap_tcp", j) + ")");
}

}  // namespace coapgw::config::detail
