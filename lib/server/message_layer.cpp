// The CoAP message layer of a worker (RFC 7252 section 4 and 5.2): duplicate detection with cached
// answers, piggybacked responses, an empty ACK followed by a separate CON response when the answer
// takes longer than coap.separate_response_after, retransmission of our CONs with exponential
// back-off, RST handling, and the RFC answers to bad input (RST for a malformed or unexpected CON,
// 4.02 for an unknown critical option, 4.05 for an unknown method).
#include <boost/asio/io_context.hpp>

#include <random>

#include "coap/block.hpp"
#include "coap/link_format.hpp"
#include "coap/option.hpp"
#include "common/log.hpp"
#include "dtls/output.hpp"
#include "gateway/forward.hpp"
#include "gateway/router.hpp"
#include "server/bad_input.hpp"
#include "server/request_target.hpp"
#include "server/worker_internal.hpp"

namespace coapgw::server {

namespace {
int type_index(std::span<const std::byte> datagram) {
  return datagram.empty() ? 0 : (std::to_integer<int>(datagram[0]) >> 4) & 0x3;
}

std::chrono::milliseconds initial_timeout(const exchange::TransmissionParameters& p) {
  // RFC 7252 4.2: a random duration between ACK_TIMEOUT and ACK_TIMEOUT * ACK_RANDOM_FACTOR.
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_real_distribution<double> dist(1.0, std::max(1.0, p.ack_random_factor));
  return std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(p.ack_timeout.count()) * dist(rng)));
}
}  // namespace

void Worker::on_malformed(Endpoint& ep, const net::ReceivedDatagram& d, coap::ParseError error) {
  count_bad(bad_reason(error));
  // RFC 7252 4.2/4.3: a CON we cannot process is rejected with an RST; a malformed NON or anything
  // else is silently dropped.
  auto header = coap::parse_header(d.data);
  if (header && header->type == coap::Type::con) send_stateless_reset(ep, d, header->message_id);
}

void Worker::on_malformed_in_session(session::Session& s, std::span<const std::byte> datagram,
                                     coap::ParseError error) {
  count_bad(bad_reason(error));
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
    else count_bad(BadReason::empty_non);
    return;
  }
  if (!coap::is_request(m.code)) {
    // We have no requests out to devices yet, so a response or a reserved code class is unexpected.
    count_bad(coap::is_response(m.code) ? BadReason::unexpected_response : BadReason::reserved_code);
    if (m.type == coap::Type::con) send_empty(s, coap::Type::rst, m.message_id);
    return;
  }
  on_request(s, m, now);
}

void Worker::on_ack_or_rst(session::Session& s, const coap::MessageView& m) {
  auto it = outstanding_.find(exchange_key(s, m.message_id));
  if (it == outstanding_.end()) return;  // late or stray: ignore (RFC 7252 4.2)
  if (!coap::is_empty(m.code)) {
    // Our CONs are responses: the device's ACK is empty (RFC 7252 5.2.3). Anything else is not an
    // answer to it and must not end the exchange (it would stop our retransmissions).
    count_bad(BadReason::unexpected_ack);
    return;
  }
  if (m.type == coap::Type::rst)
    log::debug("separate response rejected with RST", s.id());
  auto* session = it->second->session;
  outstanding_.erase(it);
  // A server session outlives its release (it goes to the idle pool); a closed one may not.
  bool survives = !session->closed() && session->type() == session::Type::server;
  session->release();
  if (survives) close_if_drained(*session);  // posts: the caller may still be using it
}

namespace {
// Block size we can send: the largest 16 << szx that leaves room for header, token and options in
// coap.max_message_size.
std::uint8_t max_szx_for(std::size_t max_message_size) {
  std::size_t room = max_message_size > 64 ? max_message_size - 64 : 16;
  return coap::szx_for_size(room);
}

}  // namespace

void Worker::on_request(session::Session& s, const coap::MessageView& m, session::TimePoint now) {
  const auto token_fp = exchange::ExchangeCache::fingerprint(m.token);
  auto& cache = cache_for(s);
  const auto* e = cache.find(s.id(), m.message_id, now);
  if (e != nullptr && e->token_fp != token_fp) {
    // Same message id, another token: a new exchange (RFC 7252 4.5 duplicates repeat the token).
    count_bad(BadReason::message_id_reused);
    e = nullptr;
  }
  if (e != nullptr) {
    ++local_.duplicates;
    // The same answer again for a CON (piggybacked response, or the empty ACK of a separate one);
    // a duplicate NON, or a CON still being worked on before any ACK went out, is not processed again.
    if (m.type == coap::Type::con && e->answered && e->length != 0) {
      auto answer = e->response();
      std::vector<std::byte> copy(answer.begin(), answer.end());  // send_to may touch the cache
      send_to(s, copy);
    }
    return;
  }
  cache.insert(s.id(), m.message_id, now, token_fp);

  Reply r;
  r.request_type = m.type;
  r.message_id = m.message_id;
  r.token_length = static_cast<std::uint8_t>(m.token.size());
  std::copy(m.token.begin(), m.token.end(), r.token.begin());
  r.method = m.code;
  r.block2_szx = max_szx_for(settings_.max_message_size);

  if (auto bad = coap::first_bad_critical_option(m)) {
    // RFC 7252 5.4.1: unrecognized critical option -> 4.02 for a CON, rejected (dropped) for a NON.
    if (m.type == coap::Type::con) {
      std::string text = "unrecognized critical option " + std::to_string(*bad);
      reply(s, r, coap::code::bad_option, 0, coap::as_bytes(text), now);
    } else {
      count_request(m.code, coap::code::bad_option);
    }
    return;
  }
  if (coap::method_name(m.code).empty()) {
    reply(s, r, coap::code::method_not_allowed, std::nullopt, {}, now);
    return;
  }
  if (auto refusal = check_request_target(m, s.addr_local())) {
    count_bad(refusal->reason);
    reply(s, r, refusal->code, 0, coap::as_bytes(refusal->diagnostic), now);
    return;
  }
  auto path = coap::uri_path(m);
  auto query = coap::uri_query(m);
  r.answer_key = answer_key_of(s, m, path, query);
  if (auto* b2 = m.find(coap::option::block2)) {
    auto block = coap::decode_block(b2->value);
    if (!block) {
      reply(s, r, coap::code::bad_request, 0, coap::as_bytes("bad Block2 option"), now);
      return;
    }
    // RFC 7959 2.4: when we use a smaller block than the client asked for, its block number is
    // rescaled to ours so the byte offset stays the same.
    std::uint8_t ours = std::min(r.block2_szx, block->szx);
    r.block2_num = block->num << (block->szx - ours);
    r.block2_szx = ours;
    if (r.block2_num > coap::max_block_num) {
      // Rescaled past what a Block2 option can carry (20 bits): refuse rather than label a
      // block with a number that wraps.
      r.block2_num = 0;
      reply(s, r, coap::code::bad_option, 0, coap::as_bytes("Block2 number out of range"), now);
      return;
    }
    if (block->num > 0 && serve_cached_block(s, m, r, now)) return;
    if (block->num > 0 && m.code != coap::code::get && m.code != coap::code::fetch) {
      // A later block of a POST/PUT/... answer we no longer hold: forwarding the request again
      // (without its body) would repeat its side effect upstream.
      reply(s, r, coap::code::request_entity_incomplete, std::nullopt, {}, now);
      return;
    }
  }
  r.size2_requested = m.find(coap::option::size2) != nullptr;

  std::vector<std::byte> body(m.payload.begin(), m.payload.end());
  if (m.find(coap::option::block1) != nullptr && !reassemble(s, m, r, body, now)) return;

  if (path == "/.well-known/core") {
    if (m.code != coap::code::get) {
      reply(s, r, coap::code::method_not_allowed, std::nullopt, {}, now);
      return;
    }
    // RFC 7252 5.10.8: the resource exists and has no ETag, so If-None-Match fails and If-Match
    // holds only in its empty form.
    bool if_match = false, if_match_holds = false;
    for (const coap::OptionView& o : m.option_list()) {
      if (o.number != coap::option::if_match) continue;
      if_match = true;
      if_match_holds = if_match_holds || o.value.empty();
    }
    const bool precondition_failed = (if_match && !if_match_holds) || m.find(coap::option::if_none_match) != nullptr;
    if (precondition_failed) {
      reply(s, r, coap::code::precondition_failed, std::nullopt, {}, now);
      return;
    }
    std::vector<coap::Link> links;
    for (auto& prefix : route_prefixes_) links.push_back(coap::Link{prefix, {}});
    auto text = coap::write_link_format(links);
    reply(s, r, coap::code::content, 40, coap::as_bytes(text), now);
    return;
  }
  auto match = router_ ? router_->match(path) : std::nullopt;
  if (!match) {
    reply(s, r, coap::code::not_found, std::nullopt, {}, now);
    return;
  }
  start_forward(s, m, *match, std::move(path), std::move(query), std::move(r), std::move(body), now);
}

void Worker::reply(session::Session& s, const Reply& r, std::uint8_t code,
                   std::optional<std::uint16_t> content_format, std::span<const std::byte> body,
                   session::TimePoint now, std::optional<std::uint32_t> max_age, std::optional<std::uint32_t> size1,
                   std::span<const std::pair<std::uint16_t, std::vector<std::byte>>> relayed) {
  bool piggyback = r.request_type == coap::Type::con && !r.separate;
  auto type = piggyback ? coap::Type::ack : (r.separate ? coap::Type::con : coap::Type::non);
  auto mid = piggyback ? r.message_id : s.next_message_id();

  std::uint8_t szx = std::min(r.block2_szx, max_szx_for(settings_.max_message_size));
  auto window = block2_window(s, r, code, content_format, max_age, body, relayed, szx, now);
  if (window.past_end) code = coap::code::bad_option;
  const auto& block2 = window.block2;
  std::span<const std::byte> payload = window.payload;

  // Options in number order: our own plus what an upstream answer relays (ETag, Location-*).
  struct Opt {
    std::uint16_t number;
    std::span<const std::byte> value;
  };
  std::array<Opt, 48> opts;  // ours (at most 6) and relayed ones; a message holds few more
  std::size_t n_opts = 0;
  std::array<std::byte, 4> cf_buf, age_buf, size2_buf, size1_buf;
  std::array<std::byte, 3> b2_buf, b1_buf;
  auto add_uint = [&](std::uint16_t number, std::uint32_t v, std::array<std::byte, 4>& buf) {
    opts[n_opts++] = Opt{number, std::span<const std::byte>(buf.data(), coap::encode_uint(v, buf))};
  };
  if (content_format) add_uint(coap::option::content_format, *content_format, cf_buf);
  if (max_age) add_uint(coap::option::max_age, *max_age, age_buf);
  if (block2) opts[n_opts++] = Opt{coap::option::block2, std::span<const std::byte>(b2_buf.data(), coap::encode_block(*block2, b2_buf))};
  if (r.block1) opts[n_opts++] = Opt{coap::option::block1, std::span<const std::byte>(b1_buf.data(), coap::encode_block(*r.block1, b1_buf))};
  if (block2 && (block2->num == 0 || r.size2_requested)) add_uint(coap::option::size2, static_cast<std::uint32_t>(body.size()), size2_buf);
  if (size1) add_uint(coap::option::size1, *size1, size1_buf);
  bool cut = false;  // an upstream answer with more options than we can relay: never relayed in part
  for (auto& [number, value] : relayed) {
    if (n_opts < opts.size()) opts[n_opts++] = Opt{number, value};
    else cut = true;
  }
  if (!window.etag.empty()) {
    if (n_opts < opts.size()) opts[n_opts++] = Opt{coap::option::etag, window.etag};
    else cut = true;
  }
  std::stable_sort(opts.begin(), opts.begin() + static_cast<std::ptrdiff_t>(n_opts),
                   [](const Opt& a, const Opt& b) { return a.number < b.number; });
  coap::MessageWriter w(scratch_);
  w.header(type, code, mid, r.token_span());
  for (std::size_t i = 0; i < n_opts; ++i) w.option(opts[i].number, opts[i].value);
  w.payload(payload);
  if (w.overflow() || cut) {
    // Options alone do not fit coap.max_message_size (or the option table): say so rather than
    // send a cut message.
    coap::MessageWriter e(scratch_);
    e.header(type, cut ? coap::code::bad_gateway : coap::code::internal_server_error, mid, r.token_span());
    w = e;
  }
  count_request(r.method, code);
  auto bytes = w.bytes();
  if (type == coap::Type::con) {
    send_con(s, std::vector<std::byte>(bytes.begin(), bytes.end()), mid, now);
  } else {
    cache_for(s).set_response(s.id(), r.message_id, bytes, exchange::ExchangeCache::fingerprint(r.token_span()));
    send_to(s, bytes);
  }
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
  // The engine ends a session whose write sequence is exhausted (renegotiation is refused).
  if (out.closed && !s.closed()) {
    // Closed outside the caller's frame, which may still use the session; found again by key and
    // id because it may be gone by then.
    post([this, key = s.key(), id = s.id()] {
      if (auto* again = table_->find(key); again != nullptr && again->id() == id)
        table_->close(*again, session::CloseReason::disconnected);
    });
  }
}

void Worker::send_con(session::Session& s, std::vector<std::byte> datagram, std::uint16_t mid,
                      session::TimePoint now) {
  send_to(s, datagram);
  if (outstanding_.size() >= settings_.max_outstanding) {
    count_bad(BadReason::outstanding_full);  // sent once, not retransmitted
    return;
  }
  auto o = std::make_unique<Outstanding>();
  o->session = &s.reference();
  o->message_id = mid;
  o->timeout = initial_timeout(settings_.transmission);
  o->deadline = now + o->timeout;
  o->datagram = std::move(datagram);
  auto [it, inserted] = outstanding_.try_emplace(exchange_key(s, mid));
  // The 16-bit message id wrapped while an older CON with the same id was still unacknowledged:
  // that one is given up, and its reference returned.
  if (!inserted) it->second->session->release();
  it->second = std::move(o);
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

void Worker::start_forward(session::Session& s, const coap::MessageView& m, const gateway::Router::Match& match,
                           std::string path, std::string query, Reply r, std::vector<std::byte> body,
                           session::TimePoint now) {
  if (pending_.size() >= settings_.max_pending_forwards || draining_.load(std::memory_order_relaxed)) {
    reply(s, r, coap::code::service_unavailable, std::nullopt, {}, now, 5);
    return;
  }
  gateway::ForwardRequest req;
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
  req.remote = s.addr_remote().to_string();
  req.session_id = s.id();

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
                  [this, id](gateway::ForwardResponse r) { on_forward_done(id, std::move(r)); });
}

void Worker::on_forward_done(std::uint64_t pending_id, gateway::ForwardResponse response) {
  auto it = pending_.find(pending_id);
  if (it == pending_.end()) return;
  auto p = std::move(it->second);
  pending_.erase(it);
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  auto now = session::Clock::now();
  p->metrics.record(response.outcome, std::chrono::duration<double>(now - p->started).count());
  session::Session& s = *p->session;
  bool open = !s.closed();
  bool survives = open && s.type() == session::Type::server;  // a server session outlives release()
  if (open)
    reply(s, p->reply, response.code, response.content_format, response.payload, now, response.max_age, std::nullopt,
          response.options);
  s.release();  // a closed session may be freed here
  if (survives) close_if_drained(s);
  send_batch_->flush();
}

void Worker::separate_due(session::TimePoint now) {
  for (auto& [id, p] : pending_) {
    auto& r = p->reply;
    if (r.separate || r.request_type != coap::Type::con || now < p->separate_deadline) continue;
    if (p->session->closed()) continue;
    // The upstream is slow: acknowledge now so the device stops retransmitting, answer later.
    std::array<std::byte, 4> buf{};
    coap::MessageWriter w(buf);
    w.header(coap::Type::ack, coap::code::empty, r.message_id, {});
    cache_for(*p->session).set_response(p->session->id(), r.message_id, w.bytes(), exchange::ExchangeCache::fingerprint(r.token_span()));
    send_to(*p->session, w.bytes());
    r.separate = true;
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
  blockwise_for(s).drop_session(s.id());  // its uploads and kept answers can never be asked for again
}

}  // namespace coapgw::server
