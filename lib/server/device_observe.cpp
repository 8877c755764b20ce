// Observations of device resources (RFC 7641) for the backend API: a GET with Observe=0 registered
// in the layer's client role as a multi-answer request; every fresh notification (ObserveOrder,
// §3.4) is POSTed to the observation's notify URL through the HTTP client that forwarding uses, one
// at a time and in order. It ends when the backend cancels it (a GET with Observe=1 deregisters it,
// §3.6), when the device ends it (an error or a notification without Observe), or with the session.
// The session stays a client session meanwhile (DeviceLinks::begin_call).
#include <atomic>
#include <deque>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include "coap/option.hpp"
#include "metrics/metrics.hpp"
#include "server/device_links.hpp"
#include "upstream/http_upstream.hpp"

namespace coapgw::server {

namespace {
// Notifications waiting for the notify URL, per observation; beyond, the oldest is dropped (the
// backend wants the latest state, RFC 7641 §1.3: eventual consistency).
constexpr std::size_t max_notifications_waiting = 64;
// Observation ids unique in the process (every worker hands them out).
std::atomic<std::uint64_t> next_observation_id{1};

void add_observe(exchange::Request& req, std::uint32_t value) {
  std::array<std::byte, 4> buf{};
  auto n = coap::encode_uint(value, buf);
  req.options.push_back(coap::Option{coap::option::observe, std::vector<std::byte>(buf.begin(), buf.begin() + n)});
}
}  // namespace


DeviceLinks::~DeviceLinks() = default;

void DeviceLinks::observe(const api::DeviceRef& device, api::ObserveRequest request, std::chrono::milliseconds timeout,
                          std::function<void(api::ObserveResult)> done) {
  auto refuse = [&](api::DownlinkStatus status, std::string reason) {
    api::ObserveResult r;
    r.status = status;
    r.reason = std::move(reason);
    done(std::move(r));
  };
  auto* s = find(device);
  if (s == nullptr) return refuse(api::DownlinkStatus::no_session, "");
  auto o = std::make_unique<Observation>();
  auto target = upstream::parse_http_target(request.notify);
  if (!target) return refuse(api::DownlinkStatus::rejected, "notify is not an http(s) URL");
  try {
    upstream::RouteSpec spec;
    spec.upstream = (target->tls ? "https://" : "http://") + target->host_header;
    spec.max_in_flight = 1;
    o->notifier = notifier_(spec);
  } catch (const std::exception& e) {
    return refuse(api::DownlinkStatus::rejected, std::string("notify: ") + e.what());
  }
  o->notify_path = target->base_path.empty() ? "/" : target->base_path;
  o->id = next_observation_id.fetch_add(1, std::memory_order_relaxed);
  o->device_key = device.key();
  o->session = s;
  o->target.uri_path = std::move(request.uri_path);
  o->target.uri_query = std::move(request.uri_query);
  o->done = std::move(done);

  const auto now = clock_();
  exchange::Request req = to_exchange_request(o->target);
  add_observe(req, 0);  // register
  req.deadline = now + timeout;
  req.multi = true;
  const auto id = o->id;
  auto handler = [this, id](exchange::Result result) {
    post_([this, id, result = std::move(result)]() mutable { on_observe_answer(id, std::move(result)); });
  };
  begin_call(*s);
  auto token = layer_.client().start(*s, std::move(req), std::move(handler), now, false);
  if (!token) {
    end_call(*s);
    return refuse(api::DownlinkStatus::rejected, "too many downlink requests in flight");
  }
  o->token = *token;
  observations_.emplace(id, std::move(o));
  flush_();
}

void DeviceLinks::on_observe_answer(std::uint64_t id, exchange::Result result) {
  auto it = observations_.find(id);
  if (it == observations_.end() || it->second->ended) return;
  Observation& o = *it->second;
  const auto* observe = result.failure ? nullptr : result.response.find(coap::option::observe);
  const bool success = !result.failure && (result.response.code >> 5) == 2;
  std::optional<std::uint32_t> seq;
  if (observe != nullptr) seq = coap::decode_uint(observe->value);
  if (!o.registered) {
    api::ObserveResult r;
    if (success && seq) {
      o.registered = true;
      o.order.take(*seq, clock_());
      metrics_.observations().Increment();
      r.status = api::DownlinkStatus::answered;
      r.id = id;
      r.first = to_downlink_result(std::move(result), *o.session).answer;
      return std::exchange(o.done, nullptr)(std::move(r));
    }
    auto answer = to_downlink_result(std::move(result), *o.session);
    r.status = answer.status == api::DownlinkStatus::answered ? api::DownlinkStatus::rejected : answer.status;
    r.reason = answer.status == api::DownlinkStatus::answered
                   ? "the device did not accept the observation (answered " + coap::code_string(answer.answer.code) + ")"
                   : answer.reason;
    auto done = std::exchange(o.done, nullptr);
    end_observation(id, false);
    return done(std::move(r));
  }
  if (result.failure) return end_observation(id, false);  // the session ended
  if (success && seq) {
    if (o.order.take(*seq, clock_())) notify(o, std::move(result.response), seq);
    return;
  }
  // RFC 7641 §3.2: an error, or a success without Observe, ends the observation; still told.
  notify(o, std::move(result.response), std::nullopt);
  end_observation(id, false);
}

void DeviceLinks::notify(Observation& o, exchange::Response response, std::optional<std::uint32_t> seq) {
  upstream::ForwardRequest post;
  post.method = "POST";
  post.path = o.notify_path;
  if (auto* cf = response.find(coap::option::content_format))
    post.content_format = static_cast<std::uint16_t>(coap::decode_uint(cf->value));
  post.payload = std::move(response.payload);
  post.identity = o.device_key;
  post.remote = o.session->addr_remote().to_string();
  post.session_id = o.session->id();
  post.observe = seq;
  if (o.outbox.size() >= max_notifications_waiting) o.outbox.pop_front();
  o.outbox.push_back(std::move(post));
  metrics_.notifications().Increment();
  if (!o.posting) post_next(o.id);
}

void DeviceLinks::post_next(std::uint64_t id) {
  auto it = observations_.find(id);
  if (it == observations_.end()) return;
  Observation& o = *it->second;
  if (o.outbox.empty()) {
    o.posting = false;
    if (o.ended) observations_.erase(it);
    return;
  }
  o.posting = true;
  auto next = std::move(o.outbox.front());
  o.outbox.pop_front();
  o.notifier->forward(std::move(next), [this, id](upstream::ForwardResponse) { post_next(id); });
}

void DeviceLinks::end_observation(std::uint64_t id, bool deregister) {
  auto it = observations_.find(id);
  if (it == observations_.end() || it->second->ended) return;
  Observation& o = *it->second;
  o.ended = true;
  layer_.client().cancel(o.token);
  if (o.registered) metrics_.observations().Decrement();
  session::Session& s = *o.session;
  if (deregister && !s.closed()) {
    // RFC 7641 §3.6: a GET with Observe=1 for the same resource; its answer is not waited for.
    exchange::Request req = to_exchange_request(o.target);
    add_observe(req, 1);
    const auto now = clock_();
    req.deadline = now + std::chrono::seconds(30);
    layer_.client().start(s, std::move(req), [](exchange::Result) {}, now, false);
    flush_();
  }
  end_call(s);
  if (!o.posting) observations_.erase(it);
}

bool DeviceLinks::cancel_observation(const api::DeviceRef& device, std::uint64_t id) {
  auto it = observations_.find(id);
  if (it == observations_.end() || it->second->ended || !it->second->registered ||
      it->second->device_key != device.key())
    return false;
  end_observation(id, true);
  return true;
}

}  // namespace coapgw::server
