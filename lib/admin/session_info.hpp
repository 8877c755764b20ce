// What the admin API shows of one session, and how it asks the workers for a
// page of them. The lister is asynchronous because the session tables belong
// to the workers: the admin thread posts a request to each worker and gets
// the merged answer back through `done`, never by locking a table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace coapgw::admin {

struct SessionInfo {
  std::uint64_t id = 0;
  std::string proto, type, state;  // label values as in the metrics: "dtls", "server", "established"
  std::string remote, local;       // Address::to_string()
  int ifindex = -1;
  std::string identity;            // PSK identity or certificate CN; empty on plain CoAP
  std::string tenant;              // from the device registry (dtls.psk.lookup); empty when none
  std::string cid;                 // RFC 9146 Connection ID we issued, hex; empty when none
  std::int64_t created_unix_ms = 0, last_seen_unix_ms = 0;
  int refcount = 0;
  unsigned downlinks = 0;          // backend requests pending on it (it is a `client` session meanwhile)
  bool idle = false;
};

// Asks the workers for up to `limit` sessions with id > after_id, sorted by
// id; `done` may be called on any thread, exactly once (later calls and calls
// after the admin server stopped are ignored).
using SessionLister = std::function<void(std::uint64_t after_id, std::size_t limit,
                                         std::function<void(std::vector<SessionInfo>)> done)>;

}  // namespace coapgw::admin
