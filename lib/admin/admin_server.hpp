// coapgw::admin::AdminServer — the HTTP/1.1 admin listener (listen.admin):
// GET|HEAD /metrics, /healthz, /readyz, /v1/sessions?limit=&cursor=.
//
// It runs on its own io_context and thread so that a slow or abusive admin
// client can never stall a worker: workers are only reached through the
// asynchronous SessionLister, and every resource a client can hold is bounded
// (connections, request bytes, time per request, time waiting for workers).
// Beast stays behind the pimpl.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "admin/session_info.hpp"
#include "common/address.hpp"

namespace coapgw::metrics {
class Metrics;
}

namespace coapgw::admin {

struct AdminSettings {
  Address listen;
  // Connections beyond this are accepted and closed at once
  // (coapgw_admin_rejected_total{reason="connection_limit"}).
  std::size_t max_connections = 64;
  // Deadline for reading one request (also the keep-alive idle time) and for
  // writing its response; slowloris clients are cut off here.
  std::chrono::milliseconds request_timeout{10000};
  // Request line + headers + body; above it the client gets 413 and a close.
  std::size_t max_request_bytes = 8192;
  // How long /v1/sessions waits for the workers before answering 503.
  std::chrono::milliseconds lister_timeout{5000};
};

class AdminServer {
 public:
  AdminServer(AdminSettings settings, metrics::Metrics& metrics, SessionLister lister);
  ~AdminServer();  // stops
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds (port 0 allowed) and starts the admin thread. Returns false and
  // sets *error (if given) when the address cannot be bound. Call once.
  bool start(std::string* error);
  // The bound address with the port resolved; valid after start() succeeded.
  Address local_address() const;
  // /readyz answers 200 "ready" when true, 503 otherwise. Starts false.
  void set_ready(bool ready);
  // Closes the listener and every connection, joins the thread. Idempotent.
  void stop();

  // Connections closed at once because max_connections were open.
  std::uint64_t rejected_connections() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace coapgw::admin
