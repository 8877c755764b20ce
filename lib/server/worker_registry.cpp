// The worker's device-registry wiring (issue 16): the PSK lookup's HTTP client on this worker's
// io_context, and its answers handed to the DTLS transport (registry_path.cpp) with the datagrams
// they release sent at once, and to the stream transport (stream_registry.cpp), which shares it.
#include "server/worker_internal.hpp"
#include "upstream/http_upstream.hpp"

namespace coapgw::server {

void Worker::enable_psk_lookup(PskLookup::Settings settings) {
  upstream::RouteSpec spec;
  spec.prefix = "/";
  spec.upstream = PskLookup::origin_of(settings.url);
  spec.timeout = settings.timeout;
  spec.max_in_flight = settings.max_in_flight;
  auto client = upstream::make_http_upstream(*io_, spec);
  dtls_->set_psk_lookup(std::make_unique<PskLookup>(
      std::move(settings), std::move(client), metrics_,
      [this](const std::string& identity, std::vector<PskLookup::Held> held) {
        std::vector<PskLookup::Held> streams;
        for (auto& h : held)
          if (h.stream) streams.push_back(std::move(h));
        std::erase_if(held, [](const PskLookup::Held& h) { return h.stream; });
        dtls_->on_key_answer(identity, std::move(held), session::Clock::now());
        stream_->on_key_answer(identity, streams);
        send_batch_->flush();
      }));
  stream_->set_psk_lookup(dtls_->psk_lookup());
}

}  // namespace coapgw::server
