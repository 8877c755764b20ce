// coapgw::server::Gateway — the whole process: metrics, the session budget, N workers with their
// sockets, DTLS contexts and routes, the admin listener, reload and graceful shutdown. The daemon's
// main() only parses options, handles signals and calls into this.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/address.hpp"

namespace coapgw::config {
struct Config;
}
namespace coapgw::metrics {
class Metrics;
}

namespace coapgw::server {

class Worker;

class Gateway {
 public:
  explicit Gateway(std::shared_ptr<const config::Config> config);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds every listener and starts the workers and the admin thread. false + a one-line reason
  // (port in use, bad certificate, ...) on failure.
  bool start(std::string* error);
  // SIGHUP: validated new config; keys, routes and log level change without dropping sessions.
  // Listeners, threads and session limits need a restart (logged when they differ).
  bool reload(std::shared_ptr<const config::Config> config, std::string* error);
  // SIGHUP with an invalid file: counted as a failed reload.
  void count_failed_reload();
  // SIGTERM: /readyz turns 503, no new sessions, close_notify to DTLS sessions, in-flight forwards
  // get up to shutdown.drain_timeout; returns when drained or the deadline passed.
  void drain();
  void stop();

  std::vector<Address> coap_addresses() const;
  std::vector<Address> coaps_addresses() const;
  std::optional<Address> admin_address() const;
  // The workers' heartbeats are fresh (the systemd watchdog pings only while this holds).
  bool workers_alive() const;
  metrics::Metrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coapgw::server
