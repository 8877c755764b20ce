// The server role's forwarding: a checked request becomes an upstream::ForwardRequest on its route
// (the session referenced while pending, bounded by coap.max_pending_forwards, refused while
// draining); a slow upstream gets the device an empty ACK after coap.separate_response_after and
// the answer later as our own CON; the route's metrics record each outcome.
#include "coap/option.hpp"
#include "server/dtls_tls.hpp"
#include "server/observe_relays.hpp"
#include "server/request_target.hpp"
#include "server/server_role.hpp"
#include "upstream/forward.hpp"

namespace coapgw::server {

void ServerRole::start_forward(session::Session& s, const coap::MessageView& m, const upstream::Router::Match& match,
                               std::string path, std::string query, Reply r, std::vector<std::byte> body,
                               session::TimePoint now) {
  if (pending_.size() >= settings_.max_pending_forwards || host_.draining()) {
    reply(s, r, coap::code::service_unavailable, std::nullopt, {}, now, 5);
    return;
  }
  upstream::ForwardRequest req;
  req.method = std::string(coap::method_name(m.code));
  req.path = std::move(path);
  req.query = std::move(query);
  if (auto* cf = m.find(coap::option::content_format))
    req.content_format = static_cast<std::uint16_t>(coap::decode_uint(cf->value));
  if (auto* acc = m.find(coap::option::accept))
    req.accept = static_cast<std::uint16_t>(coap::decode_uint(acc->value));
  copy_conditionals(m, req);
  req.payload = std::move(body);
  req.identity = std::string(device_identity(s));
  req.tenant = std::string(device_tenant(s));
  req.remote = s.addr_remote().to_string();
  req.session_id = s.id();
  req.observer = relays_->on_request(s, m);  // Observe=0: relayed if the upstream can (observe_relays.hpp)

  auto p = std::make_unique<PendingForward>();
  p->session = &s.reference();
  p->reply = std::move(r);
  p->started = now;
  p->separate_deadline = now + settings_.separate_response_after;
  p->metrics = route_metrics_[match.index];
  p->router = router_;
  auto id = next_pending_id_++;
  auto router = p->router;
  pending_.emplace(id, std::move(p));
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  router->forward(match, std::move(req),
                  [this, id](upstream::ForwardResponse r) { on_forward_done(id, std::move(r)); });
}

void ServerRole::on_forward_done(std::uint64_t pending_id, upstream::ForwardResponse response) {
  auto it = pending_.find(pending_id);
  if (it == pending_.end()) return;
  auto p = std::move(it->second);
  pending_.erase(it);
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  auto now = host_.now();
  p->metrics.record(response.outcome, std::chrono::duration<double>(now - p->started).count());
  session::Session& s = *p->session;
  bool open = !s.closed();
  bool survives = open && s.type() == session::Type::server;  // a server session outlives release()
  if (open)
    reply(s, p->reply, response.code, response.content_format, response.payload, now, response.max_age, std::nullopt,
          response.options);
  if (open) relays_->on_first_answer(s, p->reply.token_span(), response);
  s.release();  // a closed session may be freed here
  if (survives) host_.exchange_done(s);
  host_.flush();
}

void ServerRole::separate_due(session::TimePoint now) {
  for (auto& [id, p] : pending_) {
    auto& r = p->reply;
    if (r.separate || r.request_type != coap::Type::con || now < p->separate_deadline) continue;
    if (p->session->closed()) continue;
    // The upstream is slow: acknowledge now so the device stops retransmitting, answer later.
    std::array<std::byte, 4> buf{};
    coap::MessageWriter w(buf);
    w.header(coap::Type::ack, coap::code::empty, r.message_id, {});
    layer_->answer(*p->session, r.message_id, r.token_span(), w.bytes());
    r.separate = true;
  }
}

}  // namespace coapgw::server
