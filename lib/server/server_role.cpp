// The server role on top of the worker's exchange::Layer (RFC 7252 section 4 and 5.2): the layer
// deduplicates, matches ACK/RST and retransmits our CONs; here a new request is checked (critical
// options, methods, request target, Block2 follow-ups, Block1 reassembly) and answered or
// forwarded, with the layer's reports counted. The reply writer is server_reply.cpp, forwarding
// server_forward.cpp, block-wise blockwise_layer.cpp.
#include "server/server_role.hpp"

#include <prometheus/counter.h>

#include <algorithm>

#include "coap/link_format.hpp"
#include "coap/option.hpp"
#include "common/log.hpp"
#include "metrics/metrics.hpp"
#include "server/bad_input.hpp"
#include "server/observe_relays.hpp"
#include "server/request_target.hpp"

namespace coapgw::server {

namespace {
exchange::LayerSettings layer_settings(const ServerRoleSettings& s) {
  exchange::LayerSettings layer;
  layer.transmission = s.transmission;
  layer.max_outstanding = s.max_outstanding;
  return layer;
}
}  // namespace

ServerRole::ServerRole(ServerRoleSettings settings, Host& host, metrics::Metrics& metrics, exchange::Random random)
    : settings_(std::move(settings)),
      host_(host),
      metrics_(metrics),
      cache_plain_(settings_.exchange_cache_entries, settings_.transmission.exchange_lifetime()),
      cache_secure_(settings_.exchange_cache_entries, settings_.transmission.exchange_lifetime()),
      layer_(std::make_unique<exchange::Layer>(layer_settings(settings_), static_cast<exchange::Sink&>(*this),
                                               std::move(random))),
      limiter_(settings_.rate_limit) {
  blockwise_plain_.set_limits(settings_.blockwise);
  blockwise_secure_.set_limits(settings_.blockwise);
  relays_ = std::make_unique<ObserveRelays>(
      [this](session::Session& s, std::span<const std::byte> message) {
        host_.send_message(s, message);
        host_.flush();
      },
      [this] { return host_.now(); }, metrics_, settings_.max_message_size);
}

ServerRole::~ServerRole() { shutdown(); }

void ServerRole::drop_pending() { pending_.clear(); }

void ServerRole::shutdown() {
  pending_.clear();
  if (router_) router_->shutdown();
  router_.reset();
  old_routers_.clear();
}

void ServerRole::install_router(std::shared_ptr<upstream::Router> fresh) {
  // In-flight forwards keep the old router's upstreams alive until they answer: the old router is
  // parked until then. Requests from now on use the new one.
  std::vector<metrics::RouteMetrics> fresh_metrics;
  auto prefixes = fresh->prefixes();
  fresh_metrics.reserve(prefixes.size());
  for (const auto& prefix : prefixes) fresh_metrics.push_back(metrics_.route(prefix));
  route_prefixes_ = std::move(prefixes);
  if (router_) old_routers_.push_back(std::move(router_));
  router_ = std::move(fresh);
  route_metrics_ = std::move(fresh_metrics);
}

void ServerRole::on_tick(session::TimePoint now) {
  cache_plain_.expire(now);
  cache_secure_.expire(now);
  layer_->on_timer(now);  // retransmissions of our CONs
  separate_due(now);
  blockwise_plain_.expire(now);
  blockwise_secure_.expire(now);
  // Routers replaced by a reload are dropped once nothing uses them.
  std::erase_if(old_routers_, [](const std::shared_ptr<upstream::Router>& r) { return r.use_count() == 1; });
}

void ServerRole::drop_session(session::Session& s) {
  // disconnected(): outstanding CONs are dropped. Forwards in flight finish and see closed().
  layer_->drop_session(s);
  relays_->closed(s);
  blockwise_for(s).drop_session(s.id());  // its uploads and kept answers can never be asked for again
}

void ServerRole::flush_metrics() {
  for (std::size_t t = 0; t < messages_in_.size(); ++t) {
    if (auto d = messages_in_[t] - flushed_in_[t]; d != 0)
      metrics_.messages(true, static_cast<metrics::MsgType>(t)).Increment(static_cast<double>(d));
  }
  flushed_in_ = messages_in_;
  if (auto d = duplicates_ - flushed_duplicates_; d != 0) metrics_.duplicates().Increment(static_cast<double>(d));
  flushed_duplicates_ = duplicates_;
  const auto retransmissions = layer_->retransmissions();
  if (auto d = retransmissions - flushed_retransmissions_; d != 0)
    metrics_.retransmissions().Increment(static_cast<double>(d));
  flushed_retransmissions_ = retransmissions;
}

void ServerRole::on_malformed(session::Session& s, std::span<const std::byte> message, coap::ParseError error) {
  host_.count_bad(bad_reason(error), 1);
  auto header = coap::parse_header(message);
  if (header && header->type == coap::Type::con) layer_->send_empty(s, coap::Type::rst, header->message_id);
}

void ServerRole::on_coap(session::Session& s, const coap::MessageView& m, session::TimePoint now) {
  ++messages_in_[static_cast<int>(m.type)];
  if (heard_) heard_(s);  // queued downlinks go out now (cheap when nothing is queued)
  if (m.type == coap::Type::rst && relays_->on_rst(s, m.message_id)) return;  // a relayed notification refused
  layer_->on_message(s, m, now);  // new requests come back through on_request()
}

exchange::SendResult ServerRole::send(session::Session& s, std::span<const std::byte> message) {
  host_.send_message(s, message);
  return exchange::SendResult::sent;  // a lost datagram is the retransmission's to repair
}

void ServerRole::on_anomaly(session::Session&, exchange::Anomaly what) { host_.count_bad(bad_reason(what), 1); }

void ServerRole::on_con_ended(session::Session& s, std::uint16_t, exchange::Ending how) {
  switch (how) {
    case exchange::Ending::reset:
      log::debug("separate response rejected with RST", s.id());
      [[fallthrough]];
    case exchange::Ending::acked:
      // A server session outlives the layer's release (it goes to the idle pool); a closed one may not.
      if (!s.closed() && s.type() == session::Type::server) host_.exchange_done(s);
      break;
    case exchange::Ending::gave_up:
      log::debug("separate response not acknowledged after max_retransmit", s.id());
      break;
    case exchange::Ending::replaced:
    case exchange::Ending::dropped:
      break;
  }
}

void ServerRole::count_request(std::uint8_t method, std::uint8_t code) {
  std::uint16_t k = static_cast<std::uint16_t>(method << 8 | code);
  auto it = request_counters_.find(k);
  if (it == request_counters_.end()) {
    auto name = coap::method_name(method);
    it = request_counters_
             .emplace(k, &metrics_.requests(name.empty() ? coap::code_string(method) : name,
                                            coap::code_string(code)))
             .first;
  }
  it->second->Increment();
}

void ServerRole::on_request(session::Session& s, const coap::MessageView& m, session::TimePoint now) {
  Reply r;
  r.request_type = m.type;
  r.message_id = m.message_id;
  r.token_length = static_cast<std::uint8_t>(m.token.size());
  std::copy(m.token.begin(), m.token.end(), r.token.begin());
  r.method = m.code;
  r.block2_szx = max_szx_for(settings_.max_message_size);

  if (auto bad = coap::first_bad_critical_option(m)) {
    // RFC 7252 5.4.1: unrecognized critical option -> 4.02 for a CON, rejected (dropped) for a NON.
    // Requests over RFC 8323 streams arrive as NON but have no type: answered like a CON.
    if (m.type == coap::Type::con || session::is_reliable(s.proto())) {
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
  if (auto retry_after = over_rate_limit(s, now)) {  // devices.rate_limit: 4.29 (RFC 8516)
    reply(s, r, coap::make_code(4, 29), std::nullopt, {}, now, *retry_after);
    return;
  }
  if (auto refusal = check_request_target(m, s.addr_local())) {
    host_.count_bad(refusal->reason, 1);
    reply(s, r, refusal->code, 0, coap::as_bytes(refusal->diagnostic), now);
    return;
  }
  auto path = coap::uri_path(m);
  auto query = coap::uri_query(m);
  r.answer_key = answer_key_of(s, m, path, query);
  if (m.find(coap::option::block2) != nullptr && !check_block2(s, m, r, now)) return;
  r.size2_requested = m.find(coap::option::size2) != nullptr;

  std::vector<std::byte> body(m.payload.begin(), m.payload.end());
  if (m.find(coap::option::block1) != nullptr && !reassemble(s, m, r, body, now)) return;

  if (path == "/.well-known/core") return answer_well_known_core(s, m, r, now);
  auto match = router_ ? router_->match(path) : std::nullopt;
  if (!match) {
    reply(s, r, coap::code::not_found, std::nullopt, {}, now);
    return;
  }
  start_forward(s, m, *match, std::move(path), std::move(query), std::move(r), std::move(body), now);
}

bool ServerRole::check_block2(session::Session& s, const coap::MessageView& m, Reply& r, session::TimePoint now) {
  auto block = coap::decode_block(m.find(coap::option::block2)->value);
  if (!block) {
    reply(s, r, coap::code::bad_request, 0, coap::as_bytes("bad Block2 option"), now);
    return false;
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
    return false;
  }
  if (block->num > 0 && serve_cached_block(s, r, now)) return false;
  if (block->num > 0 && m.code != coap::code::get && m.code != coap::code::fetch) {
    // A later block of a POST/PUT/... answer we no longer hold: forwarding the request again
    // (without its body) would repeat its side effect upstream.
    reply(s, r, coap::code::request_entity_incomplete, std::nullopt, {}, now);
    return false;
  }
  return true;
}

void ServerRole::answer_well_known_core(session::Session& s, const coap::MessageView& m, const Reply& r,
                                        session::TimePoint now) {
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
}

}  // namespace coapgw::server
