// The worker's side of the downlink wiring: its DeviceLinks (device_links.hpp) on this worker's
// table, message layer, loop and HTTP client, and the DTLS transport's identity reports.
#include "server/device_links.hpp"
#include "server/worker_internal.hpp"
#include "upstream/http_upstream.hpp"

namespace coapgw::server {

std::unique_ptr<DeviceLinks> Worker::make_links() {
  return std::make_unique<DeviceLinks>(
      *table_, role_->layer(), [this](std::function<void()> fn) { post(std::move(fn)); }, [this] { send_batch_->flush(); },
      [this](const upstream::RouteSpec& spec) { return upstream::make_http_upstream(*io_, spec); }, metrics_,
      [] { return session::Clock::now(); });
}

std::vector<std::pair<std::uint8_t, std::uint16_t>> Worker::plain_endpoints() const {
  std::vector<std::pair<std::uint8_t, std::uint16_t>> plain;
  for (std::size_t i = 0; i < endpoints_.size(); ++i)
    if (endpoints_[i]->proto == session::Proto::udp)
      plain.emplace_back(static_cast<std::uint8_t>(i), endpoints_[i]->socket->bound_address().port());
  return plain;
}

void Worker::identified(session::Session& s) { links_->identified(s); }

}  // namespace coapgw::server
