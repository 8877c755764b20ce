// The downlink queue across a restart; see queue_persist.hpp.
#include "server/queue_persist.hpp"

#include <unistd.h>

#include <chrono>
#include <string>

#include "api/api_server.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "server/persist.hpp"

namespace coapgw::server {

namespace {

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void restore_downlink_queue(const config::Config& c, api::ApiServer& api) {
  if (c.sessions.persist.file.empty()) return;
  const auto sessions = config::resolve_path(c, c.sessions.persist.file);
  const auto path = sessions + ".downlink";
  if (::access(path.c_str(), F_OK) != 0) return;
  std::string why;
  auto bytes = persist::read_blob(path, sessions, c.sessions.persist.max_age, &why);
  std::optional<api::QueueLoad> load;
  if (bytes) load = api.load_queue(*bytes, now_unix_ms(), &why);
  if (load)
    log::info("restored the downlink queue from " + path + ": " + std::to_string(load->queued) + " queued, " +
              std::to_string(load->finished) + " finished, " + std::to_string(load->dropped) +
              " dropped (over the api queue bounds)");
  else
    log::warn("not restoring the downlink queue: " + why);
  // Read once, like the session file.
  ::unlink(path.c_str());
}

void save_downlink_queue(const config::Config& c, const api::ApiServer& api) {
  if (c.sessions.persist.file.empty()) return;
  const auto sessions = config::resolve_path(c, c.sessions.persist.file);
  const auto path = sessions + ".downlink";
  const std::string bytes = api.save_queue(now_unix_ms());
  std::string why;
  if (persist::write_blob(path, sessions, bytes, &why))
    log::info("persisted the downlink queue to " + path);
  else
    log::error("could not persist the downlink queue: " + why);
}

}  // namespace coapgw::server
