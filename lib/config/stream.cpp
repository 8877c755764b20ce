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
  // TCP may share an address with a UDP listener (coap and coap+tcp both default to 5683), not
  // with another TCP one.
  std::vector<std::pair<Address, std::string>> seen;
  auto visit = [&](const std::vector<Address>& list, const char* path) {
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (list[i].port() == 0) continue;
      for (const auto& [other, where] : seen)
        if (other == list[i]) r.add(index(path, i), "duplicate listen address " + list[i].to_string() + " (also " + where + ")");
      seen.emplace_back(list[i], index(path, i));
    }
  };
  visit(listen.coap_tcp, "listen.coap_tcp");
  visit(listen.coaps_tcp, "listen.coaps_tcp");
  visit(listen.coap_ws, "listen.coap_ws");
  visit(listen.coaps_ws, "listen.coaps_ws");
}

}  // namespace coapgw::config::detail
