// The CoAP message layer of a worker (RFC 7252 section 4 and 5.2): duplicate detection with cached
// answers, piggybacked responses, an empty ACK followed by a separate CON response when the answer
// takes longer than coap.separate_response_after, retransmission of our CONs with exponential
// back-off, RST handling, and the RFC answers to bad input (RST for a malformed or unexpected CON,
// 4.02 for an unknown critical option, 4.05 for an unknown method).
#include <boost/asio/io_context.hpp>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <random>

#include "coap/link_format.hpp"
#include "coap/option.hpp"
#include "common/log.hpp"
#include "dtls/output.hpp"
#include "gateway/forward.hpp"
#include "gateway/router.hpp"
#include "metrics/metrics.hpp"
#include "server/worker_internal.hpp"

namespace coapgw::server {

namespace {
int type_index(std::span<const std::byte> datagram) {
  return datagram.empty() ? 0 : (std::to_integer<int>(datagram[0]) >> 4) & 0x3;
}

std::chrono::milliseconds initial_timeout(const session::TransmissionParameters& p) {
  // RFC 7252 4.2: a random duration between ACK_TIMEOUT and ACK_TIMEOUT * ACK_RANDOM_FACTOR.
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_real_distribution<double> dist(1.0, std::max(1.0, p.ack_random_factor));
  return std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(p.ack_timeout.count()) * dist(rng)));
}
}  // namespace

void Worker::on_malformed(Endpoint& ep, const net::ReceivedDatagram& d, coap::ParseError error) {
  count_bad(coap::to_string(error));
  // RFC 7252 4.2/4.3: a CON we cannot process is rejected with an RST; a malformed NON or anything
  // else is silently dropped.
  auto header = coap::parse_header(d.data);
  if (header && header->type == coap::Type::con) send_stateless_reset(ep, d, header->message_id);
}

void Worker::on_malformed_in_session(session::Session& s, std::span<const std::byte> datagram,
                                     coap::ParseError error) {
  count_bad(coap::to_string(error));
  auto header = coap::parse_header(datagram);
  if (header && header->type == coap::Type::con) send_empty(s, coap::Type::rst, header->message_id);
}

void Worker::on_coap(session::Session& s, const coap::MessageView& m, session::TimePoint now) {
  ++local_.messages_in[static_cast<int>(m.type)];
  switch (m.type) {
    case coap::Type::ack:
    case coap::Type::rst:
      on_ack_or_rst(s, m);
      return;
    case coap::Type::con:
    case coap::Type::non:
      break;
  }
  if (coap::is_empty(m.code)) {
    // An empty CON is a "CoAP ping" and is answered with RST; an empty NON is not allowed.
    if (m.type == coap::Type::con) send_empty(s, coap::Type::rst, m.message_id);
    else count_bad("empty_non");
    return;
  }
  if (!coap::is_request(m.code)) {
    // We have no requests out to devices yet, so a response or a reserved code class is unexpected.
    count_bad(coap::is_response(m.code) ? "unexpected_response" : "reserved_code");
    if (m.type == coap::Type::con) send_empty(s, coap::Type::rst, m.message_id);
    return;
  }
  on_request(s, m, now);
}

void Worker::on_ack_or_rst(session::Session& s, const coap::MessageView& m) {
  auto it = outstanding_.find(exchange_key(s, m.message_id));
  if (it == outstanding_.end()) return;  // late or stray: ignore (RFC 7252 4.2)
  if (m.type == coap::Type::rst)
    log::debug("separate response rejected with RST", s.id());
  auto* session = it->second->session;
  outstanding_.erase(it);
  session->release();
}

void Worker::on_request(session::Session& s, const coap::MessageView& m, session::TimePoint now) {
  if (auto* e = cache_.find(s.id(), m.message_id, now)) {
    ++local_.duplicates;
    // The same answer again for a CON (piggybacked response, or the empty ACK of a separate one);
    // a duplicate NON, or a CON still being worked on before any ACK went out, is not processed again.
    if (m.type == coap::Type::con && e->answered && !e->response.empty()) {
      auto copy = e->response;  // send_to may touch the cache
      send_to(s, copy);
    }
    return;
  }
  cache_.insert(s.id(), m.message_id, now);

  if (auto bad = coap::first_bad_critical_option(m)) {
    // RFC 7252 5.4.1: unrecognized critical option -> 4.02 for a CON, rejected (dropped) for a NON.
    if (m.type == coap::Type::con) {
      std::string text = "unrecognized critical option " + std::to_string(*bad);
      answer(s, m, coap::code::bad_option, 0, coap::as_bytes(text));
    } else {
      count_request(m.code, coap::code::bad_option);
    }
    return;
  }
  if (coap::method_name(m.code).empty()) {
    answer(s, m, coap::code::method_not_allowed, std::nullopt, {});
    return;
  }
  auto path = coap::uri_path(m);
  if (path == "/.well-known/core") {
    if (m.code != coap::code::get) {
      answer(s, m, coap::code::method_not_allowed, std::nullopt, {});
      return;
    }
    std::vector<coap::Link> links;
    for (auto& prefix : route_prefixes_) links.push_back(coap::Link{prefix, {}});
    auto body = coap::write_link_format(links);
    answer(s, m, coap::code::content, 40, coap::as_bytes(body));
    return;
  }
  if (!router_ || !router_->match(path)) {
    answer(s, m, coap::code::not_found, std::nullopt, {});
    return;
  }
  start_forward(s, m, now);
}

void Worker::answer(session::Session& s, const coap::MessageView& request, std::uint8_t code,
                    std::optional<std::uint16_t> content_format, std::span<const std::byte> payload,
                    std::optional<std::uint32_t> max_age) {
  bool piggyback = request.type == coap::Type::con;
  coap::MessageWriter w(scratch_);
  w.header(piggyback ? coap::Type::ack : coap::Type::non, code,
           piggyback ? request.message_id : s.next_message_id(), request.token);
  if (content_format) w.option_uint(coap::option::content_format, *content_format);
  if (max_age) w.option_uint(coap::option::max_age, *max_age);
  // Answers larger than one datagram are cut to what fits until Block2 arrives with forwarding.
  auto room = settings_.max_message_size > w.size() + 1 ? settings_.max_message_size - w.size() - 1 : 0;
  w.payload(payload.first(std::min(room, payload.size())));
  count_request(request.code, code);
  auto bytes = w.bytes();
  cache_.set_response(s.id(), request.message_id, bytes);
  send_to(s, bytes);
}

void Worker::send_empty(session::Session& s, coap::Type type, std::uint16_t mid) {
  std::array<std::byte, 4> buf{};
  coap::MessageWriter w(buf);
  w.header(type, coap::code::empty, mid, {});
  send_to(s, w.bytes());
}

void Worker::send_to(session::Session& s, std::span<const std::byte> datagram) {
  ++local_.messages_out[type_index(datagram)];
  Endpoint& ep = *endpoints_[s.endpoint()];
  if (s.proto() == session::Proto::udp) {
    send_batch_->add(*ep.socket, s.addr_remote(), s.addr_local(), datagram);
    return;
  }
  auto* engine = engine_of(s);
  if (engine == nullptr || engine->state() != dtls::Engine::State::established) return;
  auto& out = *dtls_send_out_;
  out.clear();
  engine->send(datagram, out);
  send_dtls_datagrams(ep, s.addr_remote(), s.addr_local(), out);
}

void Worker::send_con(session::Session& s, std::vector<std::byte> datagram, std::uint16_t mid,
                      session::TimePoint now) {
  send_to(s, datagram);
  if (outstanding_.size() >= settings_.max_outstanding) {
    count_bad("outstanding_full");  // sent once, not retransmitted
    return;
  }
  auto o = std::make_unique<Outstanding>();
  o->session = &s.reference();
  o->message_id = mid;
  o->timeout = initial_timeout(settings_.transmission);
  o->deadline = now + o->timeout;
  o->datagram = std::move(datagram);
  outstanding_[exchange_key(s, mid)] = std::move(o);
}

void Worker::retransmit_due(session::TimePoint now) {
  std::vector<std::uint64_t> give_up;
  for (auto& [key, o] : outstanding_) {
    if (now < o->deadline) continue;
    if (o->transmissions > settings_.transmission.max_retransmit) {
      give_up.push_back(key);
      continue;
    }
    ++o->transmissions;
    o->timeout *= 2;
    o->deadline = now + o->timeout;
    ++local_.retransmissions;
    send_to(*o->session, o->datagram);
  }
  for (auto key : give_up) {
    auto it = outstanding_.find(key);
    auto* s = it->second->session;
    log::debug("separate response not acknowledged after max_retransmit", s->id());
    outstanding_.erase(it);
    s->release();
  }
}

void Worker::start_forward(session::Session& s, const coap::MessageView& m, session::TimePoint now) {
  auto path = coap::uri_path(m);
  auto match = router_->match(path);
  if (pending_.size() >= settings_.max_pending_forwards || draining_.load(std::memory_order_relaxed)) {
    answer(s, m, coap::code::service_unavailable, std::nullopt, {}, 5);
    return;
  }
  gateway::ForwardRequest req;
  req.method = std::string(coap::method_name(m.code));
  req.path = path;
  req.query = coap::uri_query(m);
  if (auto* cf = m.find(coap::option::content_format))
    req.content_format = static_cast<std::uint16_t>(coap::decode_uint(cf->value));
  if (auto* acc = m.find(coap::option::accept))
    req.accept = static_cast<std::uint16_t>(coap::decode_uint(acc->value));
  req.payload.assign(m.payload.begin(), m.payload.end());
  if (auto* t = s.tls_state()) req.identity = std::string(t->identity());
  req.remote = s.addr_remote().to_string();
  req.session_id = s.id();

  auto p = std::make_unique<PendingForward>();
  p->session = &s.reference();
  p->request_type = m.type;
  p->message_id = m.message_id;
  p->token_length = static_cast<std::uint8_t>(m.token.size());
  std::copy(m.token.begin(), m.token.end(), p->token.begin());
  p->method = m.code;
  p->started = now;
  p->separate_deadline = now + settings_.separate_response_after;
  p->route = match->route->prefix;
  p->router = router_;
  auto id = next_pending_id_++;
  auto router = p->router;
  pending_.emplace(id, std::move(p));
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  router->forward(*match, std::move(req),
                  [this, id](gateway::ForwardResponse r) { on_forward_done(id, std::move(r)); });
}

void Worker::on_forward_done(std::uint64_t pending_id, gateway::ForwardResponse response) {
  auto it = pending_.find(pending_id);
  if (it == pending_.end()) return;
  auto p = std::move(it->second);
  pending_.erase(it);
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  auto now = session::Clock::now();
  metrics_.upstream_requests(p->route, response.outcome).Increment();
  metrics_.upstream_duration(p->route).Observe(std::chrono::duration<double>(now - p->started).count());

  session::Session& s = *p->session;
  if (!s.closed()) {
    coap::MessageWriter w(scratch_);
    bool separate = p->acked && p->request_type == coap::Type::con;
    std::uint16_t mid = (p->request_type == coap::Type::con && !separate) ? p->message_id : s.next_message_id();
    auto type = separate ? coap::Type::con
                         : (p->request_type == coap::Type::con ? coap::Type::ack : coap::Type::non);
    w.header(type, response.code, mid, p->token_span());
    if (response.content_format) w.option_uint(coap::option::content_format, *response.content_format);
    if (response.max_age) w.option_uint(coap::option::max_age, *response.max_age);
    auto room = settings_.max_message_size > w.size() + 1 ? settings_.max_message_size - w.size() - 1 : 0;
    w.payload(std::span<const std::byte>(response.payload).first(std::min(room, response.payload.size())));
    count_request(p->method, response.code);
    auto bytes = w.bytes();
    if (separate) {
      send_con(s, std::vector<std::byte>(bytes.begin(), bytes.end()), mid, now);
    } else {
      cache_.set_response(s.id(), p->message_id, bytes);
      send_to(s, bytes);
    }
    send_batch_->flush();
  }
  s.release();
}

void Worker::separate_due(session::TimePoint now) {
  for (auto& [id, p] : pending_) {
    if (p->acked || p->request_type != coap::Type::con || now < p->separate_deadline) continue;
    if (p->session->closed()) continue;
    // The upstream is slow: acknowledge now so the device stops retransmitting, answer later.
    std::array<std::byte, 4> buf{};
    coap::MessageWriter w(buf);
    w.header(coap::Type::ack, coap::code::empty, p->message_id, {});
    cache_.set_response(p->session->id(), p->message_id, w.bytes());
    send_to(*p->session, w.bytes());
    p->acked = true;
  }
}

void Worker::drop_session_traffic(session::Session& s) {
  // disconnected(): outstanding CONs are dropped. Forwards in flight finish and see closed().
  for (auto it = outstanding_.begin(); it != outstanding_.end();) {
    if (it->second->session == &s) {
      it = outstanding_.erase(it);
      s.release();
    } else {
      ++it;
    }
  }
  if (handshaking_.erase(&s) != 0) s.release();
}

}  // namespace coapgw::server
