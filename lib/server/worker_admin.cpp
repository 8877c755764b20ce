// The worker's admin listing (/v1/sessions): a page of its sessions, run on its thread.
#include <algorithm>

#include "server/device_links.hpp"
#include "server/dtls_tls.hpp"
#include "server/worker_internal.hpp"

namespace coapgw::server {

void Worker::list_sessions(std::uint64_t after_id, std::size_t limit,
                           std::function<void(std::vector<admin::SessionInfo>)> done) {
  std::vector<const session::Session*> picked;
  table_->for_each([&](const session::Session& s) {
    if (s.id() > after_id) picked.push_back(&s);
  });
  std::sort(picked.begin(), picked.end(), [](auto* a, auto* b) { return a->id() < b->id(); });
  if (picked.size() > limit) picked.resize(limit);
  auto steady_now = session::Clock::now();
  auto wall_now = std::chrono::system_clock::now();
  auto to_unix_ms = [&](session::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               (wall_now - (steady_now - t)).time_since_epoch())
        .count();
  };
  std::vector<admin::SessionInfo> out;
  out.reserve(picked.size());
  for (auto* s : picked) {
    admin::SessionInfo i;
    i.id = s->id();
    i.proto = std::string(session::to_string(s->proto()));
    i.type = std::string(session::to_string(s->type()));
    i.state = std::string(session::to_string(s->state()));
    i.remote = s->addr_remote().to_string();
    i.local = s->addr_local().to_string();
    i.ifindex = s->ifindex();
    i.identity = std::string(device_identity(*s));
    i.cid = dtls_->cid_hex(const_cast<session::Session&>(*s));
    i.created_unix_ms = to_unix_ms(s->created());
    i.last_seen_unix_ms = to_unix_ms(s->last_seen());
    i.refcount = s->refcount();
    i.downlinks = links_->pending_on(*s);
    i.idle = s->idle();
    out.push_back(std::move(i));
  }
  done(std::move(out));
}

}  // namespace coapgw::server
