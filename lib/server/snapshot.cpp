#include "server/snapshot.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "config/config.hpp"
#include "dtls/credentials.hpp"
#include "dtls/psk_store.hpp"
#include "dtls/server_context.hpp"
#include "dtls/ticket_keys.hpp"
#include "server/psk_lookup.hpp"
#include "upstream/http_upstream.hpp"
#include "upstream/router.hpp"

namespace coapgw::server {
namespace {

std::shared_ptr<const dtls::PskStore> build_psk_store(const config::Config& c) {
  // The keys_file table is shared with the config, not copied; the inline keys go beside it.
  auto store = std::make_shared<dtls::PskStore>(c.dtls.psk.file_keys);
  store->reserve(c.dtls.psk.keys.size());
  for (auto& k : c.dtls.psk.keys) store->add(k.identity, k.key);
  return store;
}

std::vector<upstream::RouteSpec> build_routes(const config::Config& c) {
  std::vector<upstream::RouteSpec> out;
  for (auto& r : c.routes) {
    upstream::RouteSpec spec;
    spec.prefix = r.prefix;
    spec.upstream = r.upstream;
    // file: paths are relative to the config file, like every other path in it.
    if (spec.upstream.rfind("file:", 0) == 0) spec.upstream = "file:" + config::resolve_path(c, spec.upstream.substr(5));
    spec.strip_prefix = r.strip_prefix;
    spec.timeout = r.timeout;
    spec.max_in_flight = r.max_in_flight;
    spec.ca_file = r.ca_file.empty() ? "" : config::resolve_path(c, r.ca_file);
    spec.psk_identity = r.psk ? r.psk->identity : std::string();
    if (r.psk) spec.psk_key = r.psk->key;  // SecretString: no plain copy in between
    out.push_back(std::move(spec));
  }
  return out;
}

// dtls.tickets for every worker's context: the same secrets everywhere (drawn here when no key file
// names them), so that a device whose new address hashes to another worker still resumes, and the
// wall clock the key periods are counted on.
void set_tickets(const config::DtlsConfig::Tickets& c, dtls::TicketSettings& out) {
  out.enabled = c.enabled;
  if (!c.enabled) return;
  out.rotation = std::chrono::duration_cast<std::chrono::seconds>(c.rotation);
  for (const auto& secret : c.secrets) {
    const auto* first = reinterpret_cast<const std::byte*>(secret.data());
    out.secrets.emplace_back(first, first + secret.size());
  }
  if (out.secrets.empty()) out.secrets.push_back(dtls::TicketKeys::random_secret());
  out.wall_clock = [] {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  };
}

// The key a DTLS context error belongs to (ServerContext::create names the part that failed).
std::string dtls_key_of(const std::string& message) {
  if (message.find("private key") != std::string::npos || message.find("private_key") != std::string::npos)
    return "dtls.pki.private_key";
  if (message.find("certificate") != std::string::npos || message.find("pki.cert") != std::string::npos)
    return "dtls.pki.cert";
  if (message.find(" CA") != std::string::npos || message.find("pki.ca") != std::string::npos) return "dtls.pki.ca";
  if (message.find("cipher") != std::string::npos) return "dtls.ciphers";
  if (message.find("tickets") != std::string::npos) return "dtls.tickets";
  return "dtls";
}

// What FileSink's open needs, checked without creating the file: an existing file must be writable,
// a new one needs a writable directory.
std::optional<std::string> file_sink_problem(const std::string& path) {
  if (path.empty()) return "file: needs a path";
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd >= 0) {
    ::close(fd);
    return std::nullopt;
  }
  if (errno != ENOENT) return "cannot open " + path + " for appending: " + std::strerror(errno);
  auto dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return "cannot create " + path + ": directory " + dir.string() + " does not exist";
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return "cannot create " + path + " in " + dir.string() + ": " + std::strerror(errno);
  return std::nullopt;
}

}  // namespace

std::shared_ptr<const Snapshot> prepare(std::shared_ptr<const config::Config> config) {
  const auto& c = *config;
  std::vector<config::ConfigIssue> issues;
  auto snap = std::make_shared<Snapshot>();
  snap->psk = build_psk_store(c);

  auto& d = snap->dtls;
  d.psk_hint = c.dtls.psk.hint;
  d.psk = snap->psk;
  if (!c.dtls.pki.cert.empty()) d.cert_file = config::resolve_path(c, c.dtls.pki.cert);
  if (!c.dtls.pki.private_key.empty()) d.key_file = config::resolve_path(c, c.dtls.pki.private_key);
  if (!c.dtls.pki.ca.empty()) d.ca_file = config::resolve_path(c, c.dtls.pki.ca);
  d.ciphers = c.dtls.ciphers;
  d.handshake_timeout = c.dtls.handshake_timeout;
  d.connection_id = {c.dtls.connection_id.length, c.dtls.connection_id.node_id};
  set_tickets(c.dtls.tickets, d.tickets);
  bool dtls_ok = true;
  if (!d.ca_file.empty()) {
    std::string why;
    d.trust = dtls::TrustStore::load(d.ca_file, &why);
    if (!d.trust) {
      issues.push_back({"dtls.pki.ca", why});
      dtls_ok = false;
    }
  }
  if (dtls_ok) {
    // The context every worker will build from the same settings: certificate, key, their match,
    // cipher list.
    std::string why;
    if (!dtls::ServerContext::create(d, &why)) issues.push_back({dtls_key_of(why), why});
  }

  // One set of RFC 7252 §4.8 parameters for device sessions and upstreams (Gateway::start reads it).
  snap->coap_client.transmission.ack_timeout = c.coap.ack_timeout;
  snap->coap_client.transmission.ack_random_factor = c.coap.ack_random_factor;
  snap->coap_client.transmission.max_retransmit = c.coap.max_retransmit;
  snap->coap_client.max_body_bytes = c.coap.max_body_size;  // a bigger upstream answer is 5.02, never cut
  snap->routes = build_routes(c);
  for (std::size_t i = 0; i < snap->routes.size(); ++i) {
    const auto& spec = snap->routes[i];
    const std::string key = "routes[" + std::to_string(i) + "]";
    if (spec.upstream.rfind("file:", 0) == 0) {
      if (auto problem = file_sink_problem(spec.upstream.substr(5))) issues.push_back({key + ".upstream", *problem});
      continue;
    }
    // Built once on a private io_context (never run): URL, CA file, coaps PSK context, resolution.
    try {
      boost::asio::io_context probe;
      upstream::Router router(probe, {spec}, snap->coap_client);
      router.shutdown();
    } catch (const std::exception& e) {
      issues.push_back({key, e.what()});
    }
  }
  if (const auto& url = c.dtls.psk.lookup.url; !url.empty() && !upstream::parse_http_target(PskLookup::origin_of(url))) {
    issues.push_back({"dtls.psk.lookup.url", "not a valid http(s) URL: " + url});  // the client built per worker
  }
  if (!issues.empty()) throw config::ConfigError(std::move(issues));
  snap->config = std::move(config);
  return snap;
}

}  // namespace coapgw::server
