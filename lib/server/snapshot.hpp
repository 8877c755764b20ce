// coapgw::server::Snapshot — what one configuration means to the running gateway, built and checked
// before any worker sees it.
//
// prepare() is the single validation pass behind --check-config, start-up and every SIGHUP: it
// builds the PSK store, loads the client CA, creates a DTLS context from the certificate, key, CA and
// cipher list, and builds every route once (upstream URL, HTTPS CA file, coaps PSK context, name
// resolution; a file sink is checked without creating its file). So a config that --check-config
// accepts starts, and a reload that fails in any part is refused before a worker changed anything.
// Runs on the calling thread (main or reload), never on a worker.
#pragma once

#include <memory>
#include <vector>

#include "dtls/settings.hpp"
#include "upstream/coap_upstream.hpp"
#include "upstream/forward.hpp"

namespace coapgw::config {
struct Config;
}

namespace coapgw::server {

struct Snapshot {
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const dtls::PskStore> psk;
  dtls::ServerSettings dtls;               // paths resolved; dtls.psk = psk, dtls.trust = the client CA
  std::vector<upstream::RouteSpec> routes;  // paths resolved
  upstream::CoapClientSettings coap_client; // coap:// and coaps:// upstreams (the coap: section)
};

// Throws config::ConfigError with the key path of every part that failed.
std::shared_ptr<const Snapshot> prepare(std::shared_ptr<const config::Config> config);

}  // namespace coapgw::server
