// coapgw::server::ServerRole — the gateway's server role towards its devices, on top of one
// exchange::Layer (whose Sink it is), for every session of one worker whatever its transport.
//
// It owns what answering a device's request takes: the exchange caches (deduplication, RFC 7252
// §4.5), the block-wise state (Block1 reassembly, Block2 answers kept for follow-ups, RFC 7959), the
// request checks (critical options, request target, methods, /.well-known/core), the route table
// and its metric children, the pending forwards and their separate answers, the reply writer and
// the request counters. A transport hands it one whole, parsed CoAP message with on_coap(); it does
// no I/O and reads no clock: messages go out through its Host (the worker's send), time comes with
// each call or from the Host's clock (a forward's completion), randomness is injected. The layer's
// client role (downlink requests to devices) shares the layer: layer().client().
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "coap/block.hpp"
#include "coap/message.hpp"
#include "exchange/layer.hpp"
#include "metrics/labels.hpp"
#include "metrics/route_metrics.hpp"
#include "server/rate_limiter.hpp"
#include "server/blockwise_cache.hpp"
#include "session/session.hpp"
#include "upstream/router.hpp"

namespace prometheus {
class Counter;
}
namespace coapgw::metrics {
class Metrics;
}

namespace coapgw::server {

class ObserveRelays;

struct ServerRoleSettings {
  exchange::TransmissionParameters transmission;
  std::size_t max_message_size = 1152;
  std::chrono::milliseconds separate_response_after{1000};
  std::size_t exchange_cache_entries = 65536;
  std::size_t max_outstanding = 10000;        // our CONs awaiting ACK
  std::size_t max_pending_forwards = 10000;
  std::size_t max_body_size = 65536;          // Block1 reassembly bound per request
  BlockwiseLimits blockwise;
  RateLimiter::Settings rate_limit;           // devices.rate_limit (issue 16); 0 = unlimited
};

class ServerRole : private exchange::Sink {
 public:
  // What the role needs from the worker it runs on.
  class Host {
   public:
    virtual ~Host() = default;
    // One CoAP message to the peer of `s`, through the session's transport.
    virtual void send_message(session::Session& s, std::span<const std::byte> message) = 0;
    // Sends what send_message queued (after work not started by a receive: a forward's answer).
    virtual void flush() = 0;
    virtual void count_bad(metrics::BadReason reason, std::uint64_t n) = 0;
    virtual bool draining() const = 0;
    // A server session finished an exchange (answer sent, separate answer ACKed): while draining,
    // the worker may close it now.
    virtual void exchange_done(session::Session& s) = 0;
    // The clock for work that no receive started (a forward's completion).
    virtual session::TimePoint now() const = 0;
  };

  ServerRole(ServerRoleSettings settings, Host& host, metrics::Metrics& metrics, exchange::Random random);
  ~ServerRole() override;
  ServerRole(const ServerRole&) = delete;
  ServerRole& operator=(const ServerRole&) = delete;

  // The entry of every transport: one whole CoAP message from the device of `s`.
  void on_coap(session::Session& s, const coap::MessageView& m, session::TimePoint now);
  // A message of an established session that does not parse (RST for a CON, RFC 7252 §4.2).
  void on_malformed(session::Session& s, std::span<const std::byte> message, coap::ParseError error);
  // Housekeeping (the worker's tick): cache expiry, retransmissions, separate answers due.
  void on_tick(session::TimePoint now);
  // The session closed: its CONs, uploads and kept answers go; forwards in flight see closed().
  void drop_session(session::Session& s);
  // Called for every CoAP message a device sends (the backend API's device_heard).
  void set_heard(std::function<void(const session::Session&)> heard) { heard_ = std::move(heard); }

  void install_router(std::shared_ptr<upstream::Router> router);
  // At the worker's end, with its sessions closed: pending forwards dropped (drop_pending), then
  // the routers shut down (shutdown; the role's destructor does both).
  void drop_pending();
  void shutdown();
  std::size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

  exchange::Layer& layer() { return *layer_; }
  // Adds what was counted since the last call to Prometheus (messages in, duplicates, retransmissions).
  void flush_metrics();

 private:
  // Everything needed to answer a request after its datagram is gone (separate responses).
  struct Reply {
    coap::Type request_type = coap::Type::con;
    std::uint16_t message_id = 0;
    std::array<std::byte, coap::max_token_length> token{};
    std::uint8_t token_length = 0;
    std::uint8_t method = 0;
    bool separate = false;                      // the request was already ACKed: answer with our own CON
    std::string answer_key;                     // the request a Block2 answer is kept under (answer_key())
    bool from_cache = false;                    // the body is a kept Block2 answer: do not store it again
    std::optional<coap::BlockValue> block1;     // echoed in the final answer of a Block1 upload
    std::uint32_t block2_num = 0;               // block the client asked for
    std::uint8_t block2_szx = 6;                // largest block size the client accepts
    bool size2_requested = false;
    std::span<const std::byte> token_span() const { return {token.data(), token_length}; }
  };
  // A request waiting for its upstream answer.
  struct PendingForward {
    session::Session* session;   // referenced while pending
    Reply reply;
    session::TimePoint separate_deadline;
    session::TimePoint started;
    metrics::RouteMetrics metrics;  // the route's children (outlive any reload: the registry keeps them)
    std::shared_ptr<upstream::Router> router;  // keeps a replaced router alive until we answer
  };
  using Relayed = std::span<const std::pair<std::uint16_t, std::vector<std::byte>>>;

  // exchange::Sink
  exchange::SendResult send(session::Session& s, std::span<const std::byte> message) override;
  exchange::ExchangeCache* dedup_cache(session::Session& s) override { return &cache_for(s); }
  void on_request(session::Session& s, const coap::MessageView& m, session::TimePoint now) override;
  void on_duplicate(session::Session&) override { ++duplicates_; }
  void on_con_ended(session::Session& s, std::uint16_t mid, exchange::Ending how) override;
  void on_anomaly(session::Session&, exchange::Anomaly what) override;

  // server_role.cpp: the checks before a request is forwarded; false when answered here.
  bool check_block2(session::Session& s, const coap::MessageView& m, Reply& r, session::TimePoint now);
  void answer_well_known_core(session::Session& s, const coap::MessageView& m, const Reply& r,
                              session::TimePoint now);
  // server_reply.cpp: sends the answer for `r`: piggybacked, NON, or separate CON; bodies larger
  // than one block go out block-wise (Block2) and the rest is kept for the follow-up block requests.
  void reply(session::Session& s, const Reply& r, std::uint8_t code, std::optional<std::uint16_t> content_format,
             std::span<const std::byte> body, session::TimePoint now, std::optional<std::uint32_t> max_age = std::nullopt,
             std::optional<std::uint32_t> size1 = std::nullopt, Relayed relayed = {});
  void count_request(std::uint8_t method, std::uint8_t code);
  // devices.rate_limit (server_rate_limit.cpp): the Max-Age of a 4.29 when `s`'s device is over it.
  std::optional<std::uint32_t> over_rate_limit(session::Session& s, session::TimePoint now);
  // Block size we can send: the largest 16 << szx that leaves room for header, token and options in
  // coap.max_message_size.
  static std::uint8_t max_szx_for(std::size_t max_message_size);

  // blockwise_layer.cpp. Block1 (RFC 7959 2.5): true when the request is complete (body in `body`),
  // false when it was answered here (2.31 Continue, 4.08, 4.13, 4.00, 5.03).
  bool reassemble(session::Session& s, const coap::MessageView& m, Reply& r, std::vector<std::byte>& body,
                  session::TimePoint now);
  bool serve_cached_block(session::Session& s, const Reply& r, session::TimePoint now);
  // The block of `body` that `r` asks for, in block size 16 << szx; a fresh body with more blocks
  // is kept for the follow-ups (replacing what was kept for the request).
  struct Block2Window {
    std::optional<coap::BlockValue> block2;  // unset: the body goes whole
    std::span<const std::byte> payload;
    bool past_end = false;                   // asked for a block past the end (4.02)
    std::vector<std::byte> etag;             // to add: the representation's own when the upstream gave none
  };
  Block2Window block2_window(session::Session& s, const Reply& r, std::uint8_t code,
                             std::optional<std::uint16_t> content_format, std::optional<std::uint32_t> max_age,
                             std::span<const std::byte> body, Relayed relayed, std::uint8_t szx,
                             session::TimePoint now);
  static std::string answer_key_of(const session::Session& s, const coap::MessageView& m, std::string_view path,
                                   std::string_view query);

  // server_forward.cpp: `match` is the route chosen for `path` by the current router.
  void start_forward(session::Session& s, const coap::MessageView& m, const upstream::Router::Match& match,
                     std::string path, std::string query, Reply r, std::vector<std::byte> body,
                     session::TimePoint now);
  void on_forward_done(std::uint64_t pending_id, upstream::ForwardResponse response);
  void separate_due(session::TimePoint now);

  ServerRoleSettings settings_;
  Host& host_;
  metrics::Metrics& metrics_;
  // Duplicate detection, one cache for plain CoAP and one for secure sessions: a flood of (possibly
  // spoofed) plain datagrams can push plain entries out early, never those of authenticated
  // devices, whose retransmitted requests must not run twice.
  exchange::ExchangeCache cache_plain_;
  exchange::ExchangeCache cache_secure_;
  exchange::ExchangeCache& cache_for(const session::Session& s) {
    return session::authenticated(s.proto()) ? cache_secure_ : cache_plain_;
  }
  // Block-wise state, bounded per worker and per session: Block1 uploads being reassembled, and
  // Block2 answers kept for the follow-up block requests (see blockwise_cache.hpp). Plain CoAP and
  // secure sessions each have their own, with the full bounds: many (possibly spoofed) plain
  // sources filling theirs cannot refuse uploads or answers to authenticated devices.
  BlockwiseCache blockwise_plain_;
  BlockwiseCache blockwise_secure_;
  BlockwiseCache& blockwise_for(const session::Session& s) {
    return session::authenticated(s.proto()) ? blockwise_secure_ : blockwise_plain_;
  }
  // The message layer of every session; its CONs awaiting an ACK hold a session reference each.
  std::unique_ptr<exchange::Layer> layer_;
  RateLimiter limiter_;  // devices.rate_limit: one bucket per device
  // Observe through coap:// routes (observe_relays.hpp): notifications relayed to devices.
  std::unique_ptr<ObserveRelays> relays_;

  std::shared_ptr<upstream::Router> router_;
  // The metric children of router_'s routes, by Router::Match::index; replaced with router_.
  std::vector<metrics::RouteMetrics> route_metrics_;
  std::vector<std::string> route_prefixes_;
  std::vector<std::shared_ptr<upstream::Router>> old_routers_;  // replaced by a reload, still answering
  // Requests waiting for an upstream answer; each holds a session reference.
  std::unordered_map<std::uint64_t, std::unique_ptr<PendingForward>> pending_;
  std::uint64_t next_pending_id_ = 1;
  std::atomic<std::size_t> in_flight_{0};  // read by the process's drain from another thread
  std::function<void(const session::Session&)> heard_;

  // Hot-path counters, added to Prometheus by flush_metrics().
  std::array<std::uint64_t, 4> messages_in_{}, flushed_in_{};
  std::uint64_t duplicates_ = 0, flushed_duplicates_ = 0, flushed_retransmissions_ = 0;
  // coapgw_requests_total children by (method << 8 | code), resolved when a pair first appears.
  std::unordered_map<std::uint16_t, prometheus::Counter*> request_counters_;
  std::array<std::byte, 65536> scratch_{};
};

}  // namespace coapgw::server
