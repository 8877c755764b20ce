// The server role of a worker on top of its exchange::Layer (RFC 7252 section 4 and 5.2): the layer
// deduplicates, matches ACK/RST and retransmits our CONs; here are piggybacked responses, an empty ACK
// followed by a separate CON response when the answer takes longer than
// coap.separate_response_after, and the RFC answers to bad input (RST for a malformed CON, 4.02 for
// an unknown critical option, 4.05 for an unknown method), with the layer's reports counted.
#include <boost/asio/io_context.hpp>

#include "coap/block.hpp"
#include "coap/link_format.hpp"
#include "coap/option.hpp"
#include "common/log.hpp"
#include "dtls/output.hpp"
#include "upstream/forward.hpp"
#include "upstream/router.hpp"
#include "server/bad_input.hpp"
#include "server/device_links.hpp"
#include "server/request_target.hpp"
#include "server/observe_relays.hpp"
#include "server/worker_internal.hpp"

namespace coapgw::server {

namespace {
int type_index(std::span<const std::byte> datagram) {
  return datagram.empty() ? 0 : (std::to_integer<int>(datagram[0]) >> 4) & 0x3;
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
  if (header && header->type == coap::Type::con) layer_->send_empty(s, coap::Type::rst, header->message_id);
}

void Worker::on_coap(session::Session& s, const coap::MessageView& m, session::TimePoint now) {
  ++local_.messages_in[static_cast<int>(m.type)];
  if (heard_) heard_(s);  // queued downlinks go out now (cheap when nothing is queued)
  if (m.type == coap::Type::rst && relays_->on_rst(s, m.message_id)) return;  // a relayed notification refused
  layer_->on_message(s, m, now);  // new requests come back through on_request()
}

void Worker::on_anomaly(session::Session&, exchange::Anomaly what) { count_bad(bad_reason(what)); }

void Worker::on_con_ended(session::Session& s, std::uint16_t, exchange::Ending how) {
  switch (how) {
    case exchange::Ending::reset:
      log::debug("separate response rejected with RST", s.id());
      [[fallthrough]];
    case exchange::Ending::acked:
      // A server session outlives the layer's release (it goes to the idle pool); a closed one may not.
      if (!s.closed() && s.type() == session::Type::server) close_if_drained(s);  // posts
      break;
    case exchange::Ending::gave_up:
      log::debug("separate response not acknowledged after max_retransmit", s.id());
      break;
    case exchange::Ending::replaced:
    case exchange::Ending::dropped:
      break;
  }
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
    layer_->send_con(s, bytes, mid, now);  // retransmitted until ACKed; counted outstanding_full if not
  } else {
    layer_->answer(s, r.message_id, r.token_span(), bytes);  // kept for the request's duplicates
  }
}

exchange::SendResult Worker::send(session::Session& s, std::span<const std::byte> message) {
  send_to(s, message);
  return exchange::SendResult::sent;  // a lost datagram is the retransmission's to repair
}

void Worker::send_to(session::Session& s, std::span<const std::byte> datagram) {
  ++local_.messages_out[type_index(datagram)];
  Endpoint& ep = *endpoints_[s.endpoint()];
  if (s.proto() == session::Proto::udp) {
    send_batch_->add(*ep.socket, s.addr_remote(), s.addr_local(), datagram);
    return;
  }
  if (dtls_->send(s, datagram)) {
    // The engine ended the session (write sequence exhausted). Closed outside the caller's frame,
    // which may still use the session; found again by key and id because it may be gone by then.
    post([this, key = s.key(), id = s.id()] {
      if (auto* again = table_->find(key); again != nullptr && again->id() == id)
        table_->close(*again, session::CloseReason::disconnected);
    });
  }
}

void Worker::start_forward(session::Session& s, const coap::MessageView& m, const upstream::Router::Match& match,
                           std::string path, std::string query, Reply r, std::vector<std::byte> body,
                           session::TimePoint now) {
  if (pending_.size() >= settings_.max_pending_forwards || draining_.load(std::memory_order_relaxed)) {
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

void Worker::on_forward_done(std::uint64_t pending_id, upstream::ForwardResponse response) {
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
  if (open) relays_->on_first_answer(s, p->reply.token_span(), response);
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
    layer_->answer(*p->session, r.message_id, r.token_span(), w.bytes());
    r.separate = true;
  }
}

void Worker::drop_session_traffic(session::Session& s) {
  // disconnected(): outstanding CONs are dropped. Forwards in flight finish and see closed().
  layer_->drop_session(s);
  links_->closed(s);
  relays_->closed(s);
  dtls_->forget(s);
  blockwise_for(s).drop_session(s.id());  // its uploads and kept answers can never be asked for again
}

}  // namespace coapgw::server
