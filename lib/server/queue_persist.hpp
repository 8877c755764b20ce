// coapgw::server queue persistence — the backend API's sleepy-device queue across a graceful
// restart (sessions.persist, DESIGN "Downlink"): at stop the queue is sealed into
// "<sessions.persist.file>.downlink" with the session file's HMAC key (persist::write_blob); at
// start, before the API listens, it is read back once, checked, loaded and the file removed. A
// missing, corrupt, foreign or stale file is logged and ignored (nothing is partly trusted).
#pragma once

namespace coapgw::config {
struct Config;
}
namespace coapgw::api {
class ApiServer;
}

namespace coapgw::server {

// Both do nothing when sessions.persist.file is empty.
void restore_downlink_queue(const config::Config& config, api::ApiServer& api);
void save_downlink_queue(const config::Config& config, const api::ApiServer& api);

}  // namespace coapgw::server
