// coapgw::server::Process — the whole process: metrics, the session budget, N workers with their
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
struct Snapshot;

class Process {
 public:
  // `snapshot` comes from prepare() (snapshot.hpp): the configuration already validated and built.
  explicit Process(std::shared_ptr<const Snapshot> snapshot);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Binds every listener and starts the workers and the admin thread. false + a one-line reason
  // (port in use, bad certificate, ...) on failure.
  bool start(std::string* error);
  // SIGHUP: a parsed new config, prepared (snapshot.hpp) and every worker's routes built on this
  // thread; only when all of it is ready do the workers switch, else nothing changes and the reload
  // is counted as failed. Keys, client CA, routes and log level change without dropping sessions,
  // except those whose key or certificate no longer stands (closed as `revoked`). Listeners,
  // threads, session limits and the server certificate need a restart (logged when they differ).
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
  std::optional<Address> api_address() const;
  // The workers' heartbeats are fresh (the systemd watchdog pings only while this holds).
  bool workers_alive() const;
  metrics::Metrics& metrics();

 private:
  bool start_api(const std::vector<Worker*>& workers, std::string* error);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coapgw::server
