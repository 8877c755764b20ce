#include "upstream/coap_upstream.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <stdexcept>

#include "coap/message.hpp"
#include "coap/option.hpp"
#include "common/address.hpp"
#include "common/log.hpp"
#include "common/url.hpp"
#include "exchange/layer.hpp"
#include "upstream/coap_connection.hpp"
#include "session/table.hpp"

namespace coapgw::upstream {
namespace {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using error_code = boost::system::error_code;

ForwardResponse failure(std::uint8_t code, Outcome outcome) {
  ForwardResponse r;
  r.code = code;
  r.outcome = outcome;
  return r;
}

ForwardResponse overloaded() {
  auto r = failure(coap::code::service_unavailable, Outcome::overloaded);
  r.max_age = 5;
  return r;
}

bool relayed_option(std::uint16_t n) {
  return n == coap::option::etag || n == coap::option::location_path || n == coap::option::location_query;
}

ForwardResponse to_forward_response(exchange::Result result) {
  if (result.failure) {
    switch (*result.failure) {
      case exchange::Failure::timeout: return failure(coap::code::gateway_timeout, Outcome::timeout);
      case exchange::Failure::bad_response: return failure(coap::code::bad_gateway, Outcome::bad_response);
      case exchange::Failure::unreachable: return failure(coap::code::bad_gateway, Outcome::connect_failed);
      case exchange::Failure::reset:
      case exchange::Failure::closed:
      case exchange::Failure::unencodable: break;
    }
    return failure(coap::code::bad_gateway, Outcome::upstream_error);
  }
  auto& m = result.response;
  ForwardResponse r;
  r.code = m.code;
  r.outcome = coap::code_class(m.code) == 5 ? Outcome::upstream_error : Outcome::ok;
  if (auto* cf = m.find(coap::option::content_format))
    r.content_format = static_cast<std::uint16_t>(coap::decode_uint(cf->value));
  if (auto* ma = m.find(coap::option::max_age)) r.max_age = coap::decode_uint(ma->value);
  for (auto& o : m.options) {
    if (relayed_option(o.number)) r.options.emplace_back(o.number, std::move(o.value));
  }
  r.payload = std::move(m.payload);
  return r;
}

void add_option(exchange::Request& r, std::uint16_t n, std::span<const std::byte> v) {
  r.options.push_back(coap::Option{n, std::vector<std::byte>(v.begin(), v.end())});
}

void add_uint(exchange::Request& r, std::uint16_t n, std::uint32_t v) {
  std::array<std::byte, 4> buf{};
  add_option(r, n, std::span<const std::byte>(buf.data(), coap::encode_uint(v, buf)));
}

exchange::LayerSettings layer_settings(const CoapClientSettings& s) {
  exchange::LayerSettings l;
  l.transmission = s.transmission;
  l.max_outstanding = s.max_exchanges;
  l.client.block_size = s.block_size;
  l.client.max_body_bytes = s.max_body_bytes;
  l.client.max_exchanges = s.max_exchanges;
  return l;
}

// One upstream: the exchange layer in the client role over a CoapConnection, and the forwarding glue.
class CoapClient final : public std::enable_shared_from_this<CoapClient>,
                         public exchange::Sink,
                         public CoapConnection::Events {
 public:
  CoapClient(asio::io_context& io, const RouteSpec& spec, const CoapClientSettings& settings, CoapTarget target,
             std::shared_ptr<CoapConnection> connection)
      : io_(io),
        spec_(spec),
        settings_(settings),
        target_(std::move(target)),
        connection_(std::move(connection)),
        timer_(io),
        budget_(1),
        table_(nullptr, budget_, session::Table::Settings{}),
        layer_(layer_settings(settings_), *this, exchange::system_random()) {
    const auto proto = connection_->secure() ? session::Proto::dtls : session::Proto::udp;
    const Address& local = connection_->local();
    // The table starts each session's message ids at a random value (RFC 7252 §4.4), so a restarted
    // gateway reusing the same source port is not taken for a duplicate.
    session_ = table_.create_client(session::Key{connection_->remote(), local.port(), proto}, local,
                                    session::Clock::now());
    if (!session_) throw std::runtime_error("route " + spec.prefix + ": no session for the CoAP upstream");
    if (connection_->secure()) {
      session_->set_tls(connection_->tls_state());
    } else {
      session_->set_state(session::State::established);
    }
  }

  void start() { connection_->start(*this); }

  void forward(ForwardRequest request, ForwardDone done) {
    if (closed_) return post(std::move(done), failure(coap::code::bad_gateway, Outcome::upstream_error));
    if (layer_.client().size() >= settings_.max_exchanges) return post(std::move(done), overloaded());
    auto method = coap::method_code(request.method);
    if (!method) return post(std::move(done), failure(coap::code::not_implemented, Outcome::upstream_error));
    const bool must_wait = connection_->secure() && !connection_->established();
    if (must_wait && layer_.client().parked() >= settings_.max_handshake_queue) {
      return post(std::move(done), overloaded());
    }
    const auto now = exchange::Clock::now();
    exchange::Request req;
    req.code = *method;
    req.deadline = now + spec_.timeout;
    for (auto& seg : target_.base_path) add_option(req, coap::option::uri_path, coap::as_bytes(seg));
    for (auto& seg : split_path(request.path)) add_option(req, coap::option::uri_path, coap::as_bytes(seg));
    for (auto& q : split_query(request.query)) add_option(req, coap::option::uri_query, coap::as_bytes(q));
    if (request.content_format) add_uint(req, coap::option::content_format, *request.content_format);
    if (request.accept) add_uint(req, coap::option::accept, *request.accept);
    for (auto& v : request.if_match) add_option(req, coap::option::if_match, v);
    if (request.if_none_match) add_option(req, coap::option::if_none_match, {});
    for (auto& v : request.etags) add_option(req, coap::option::etag, v);
    req.payload = std::move(request.payload);
    if (request.observer) return observe(std::move(req), std::move(request.observer), std::move(done), now, must_wait);
    // Answers are posted: never from inside forward(), and the layer's tables are settled by then.
    auto handler = [&io = io_, done = std::move(done)](exchange::Result r) mutable {
      asio::post(io, [done = std::move(done), r = to_forward_response(std::move(r))]() mutable { done(std::move(r)); });
    };
    layer_.client().start(*session_, std::move(req), std::move(handler), now, must_wait);
    if (must_wait && !connection_->handshaking()) {
      session_->set_state(session::State::handshake);
      connection_->connect();
    }
    arm_timer();
  }

  // A device's Observe registration relayed (ObserveHook): Observe=0 upstream as one multi-answer
  // request. A first answer with Observe registered it: later ones go to hook->notify until the
  // worker cancels (the registration is forgotten; the upstream's next CON notification is answered
  // RST, RFC 7641 §3.6) or the upstream ends it (an answer without Observe, an error: hook->ended).
  // A hook the worker abandoned (its relay ended before the first answer) is forgotten at that
  // answer, which reaches the device without Observe.
  void observe(exchange::Request req, std::shared_ptr<ObserveHook> hook, ForwardDone done, exchange::TimePoint now,
               bool must_wait) {
    req.options.push_back(coap::Option{coap::option::observe, {}});  // 0: register
    req.multi = true;
    auto token = std::make_shared<exchange::Token>(0);
    auto first = std::make_shared<bool>(true);
    auto handler = [this, hook, token, first, done = std::move(done)](exchange::Result r) mutable {
      // A failure has ended the exchange in the layer; an answer leaves the multi registration there.
      const bool failed = r.failure.has_value();
      const auto* seq = failed ? nullptr : r.response.find(coap::option::observe);
      // The worker's relay may have ended before this answer (the device's session closed, its
      // token reused): nobody listens, so the registration is forgotten here, not kept forever.
      const bool abandoned = hook->abandoned;
      const bool registered = seq != nullptr && coap::code_class(r.response.code) == 2 && !abandoned;
      std::optional<std::vector<std::byte>> seq_value;
      if (seq != nullptr && !abandoned) seq_value = seq->value;
      auto response = to_forward_response(std::move(r));
      if (seq_value) response.options.emplace_back(coap::option::observe, std::move(*seq_value));
      if (!registered && !failed) layer_.client().cancel(*token);  // not (or no longer) observed
      if (abandoned) hook->cancel = nullptr;
      if (*first) {
        *first = false;
        if (registered) {
          hook->cancel = [weak = weak_from_this(), token] {
            if (auto self = weak.lock()) self->layer_.client().cancel(*token);
          };
        }
        return asio::post(io_, [done = std::move(done), response = std::move(response)]() mutable {
          done(std::move(response));
        });
      }
      if (abandoned) return;  // forgotten above; the relay is gone
      if (!registered) {  // the upstream ended it: an error answer goes to the device, then the end
        hook->cancel = nullptr;
        return asio::post(io_, [hook, failed, response = std::move(response)]() mutable {
          if (!failed && hook->notify) hook->notify(std::move(response));
          if (hook->ended) hook->ended();
        });
      }
      asio::post(io_, [hook, response = std::move(response)]() mutable {
        if (hook->notify) hook->notify(std::move(response));
      });
    };
    // forward() checked max_exchanges, so the layer takes it.
    if (auto t = layer_.client().start(*session_, std::move(req), std::move(handler), now, must_wait)) *token = *t;
  }

  // Answers everything in flight and closes the socket; the session is released.
  void shutdown() {
    if (closed_) return;
    closed_ = true;
    connection_->close();
    timer_.cancel();
    layer_.client().fail(*session_, exchange::ClientExchanges::Which::all, exchange::Failure::closed);
    session_->release();  // refcount 1 from create_client: frees it
    session_ = nullptr;
  }

 private:
  void post(ForwardDone done, ForwardResponse r) {
    asio::post(io_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  }

  // The one timer of this upstream: the exchange layer's next retransmission or deadline.
  void arm_timer() {
    auto due = closed_ ? std::nullopt : layer_.next_deadline();
    if (due == armed_for_) return;
    armed_for_ = due;
    if (!due) {
      timer_.cancel();
      return;
    }
    timer_.expires_at(*due);
    timer_.async_wait([self = shared_from_this(), at = *due](error_code ec) {
      if (ec || self->closed_ || self->armed_for_ != at) return;
      self->armed_for_.reset();
      self->layer_.on_timer(exchange::Clock::now());
      self->arm_timer();
    });
  }

  // exchange::Sink
  exchange::SendResult send(session::Session&, std::span<const std::byte> message) override {
    return connection_->send(message);
  }

  // CoapConnection::Events
  void on_message(std::span<const std::byte> datagram) override {
    coap::MessageView m;
    if (coap::parse(datagram, m) != coap::ParseError::ok) return;  // RFC 7252 §4.2: silently ignore
    layer_.on_message(*session_, m, exchange::Clock::now());
    arm_timer();
  }

  void on_connected() override {
    session_->set_state(session::State::established);
    layer_.client().send_parked(*session_, exchange::Clock::now());
    arm_timer();
  }

  void on_handshake_failed(const std::string& why) override {
    session_->set_state(session::State::none);
    warn("DTLS handshake with " + spec_.upstream + " failed: " + why);
    layer_.client().fail(*session_, exchange::ClientExchanges::Which::parked, exchange::Failure::unreachable);
    arm_timer();
  }

  // Nothing in flight can be answered over a lost connection; the next request handshakes again.
  void on_connection_lost(const std::string& why, bool unreachable) override {
    session_->set_state(session::State::none);
    warn("DTLS connection to " + spec_.upstream + " closed: " + why);
    layer_.client().fail(*session_, exchange::ClientExchanges::Which::all,
                         unreachable ? exchange::Failure::unreachable : exchange::Failure::closed);
    arm_timer();
  }

  // Every exchange that has not heard from the upstream yet fails now rather than at the timeout.
  void on_unreachable() override {
    layer_.client().fail(*session_, exchange::ClientExchanges::Which::awaiting_ack, exchange::Failure::unreachable);
    arm_timer();
  }

  void warn(const std::string& line) {
    if (auto suppressed = warn_limit_.allow(std::chrono::steady_clock::now())) {
      log::warn(*suppressed ? line + " (" + std::to_string(*suppressed) + " more suppressed)" : line);
    }
  }

  asio::io_context& io_;
  RouteSpec spec_;
  CoapClientSettings settings_;
  CoapTarget target_;
  std::shared_ptr<CoapConnection> connection_;  // before table_: the session's TlsState points into it
  asio::steady_timer timer_;
  std::optional<exchange::TimePoint> armed_for_;
  log::RateLimited warn_limit_;
  session::Budget budget_;  // before table_: the table returns its sessions to it
  session::Table table_;
  session::Session* session_ = nullptr;
  exchange::Layer layer_;
  bool closed_ = false;
};

// The Upstream face: owns the client, whose handlers keep it alive until they have run.
class CoapUpstream final : public Upstream {
 public:
  explicit CoapUpstream(std::shared_ptr<CoapClient> client) : client_(std::move(client)) { client_->start(); }
  ~CoapUpstream() override { client_->shutdown(); }
  void forward(ForwardRequest request, ForwardDone done) override {
    client_->forward(std::move(request), std::move(done));
  }
  void shutdown() override { client_->shutdown(); }

 private:
  std::shared_ptr<CoapClient> client_;
};

}  // namespace

std::vector<std::string> split_path(std::string_view path) { return url::split_path(path); }

std::vector<std::string> split_query(std::string_view query) { return url::split_query(query); }

std::optional<CoapTarget> parse_coap_target(std::string_view url) {
  auto parsed = url::parse_server_url(url);
  if (!parsed || (parsed->scheme != "coap" && parsed->scheme != "coaps")) return std::nullopt;
  CoapTarget t;
  t.secure = parsed->scheme == "coaps";
  t.host = std::move(parsed->host);
  t.port = parsed->port.value_or(t.secure ? 5684 : 5683);
  t.base_path = split_path(parsed->path);
  return t;
}

std::unique_ptr<Upstream> make_coap_upstream(asio::io_context& io, const RouteSpec& spec,
                                             const CoapClientSettings& settings) {
  auto target = parse_coap_target(spec.upstream);
  if (!target) throw std::runtime_error("route " + spec.prefix + ": malformed CoAP upstream \"" + spec.upstream + "\"");
  std::unique_ptr<dtls::ClientContext> dtls;
  if (target->secure) {
    if (spec.psk_key.empty()) {
      throw std::runtime_error("route " + spec.prefix + ": coaps upstream needs psk { identity, key }");
    }
    dtls::ClientSettings client;
    client.psk_identity = spec.psk_identity;
    client.psk_key = spec.psk_key;
    client.mtu = 1280;
    // A handshake may take at most half the route's timeout, so a failed one still leaves time to answer.
    client.handshake_timeout =
        std::max(std::chrono::milliseconds(1), std::min(settings.handshake_timeout, spec.timeout / 2));
    std::string error;
    dtls = dtls::ClientContext::create(std::move(client), &error);
    if (!dtls) throw std::runtime_error("route " + spec.prefix + ": coaps upstream: " + error);
  }
  if (settings.block_size < 16 || settings.transmission.max_retransmit > 20 || settings.transmission.ack_timeout.count() <= 0) {
    throw std::runtime_error("route " + spec.prefix + ": bad CoAP transmission parameters");
  }
  udp::resolver resolver(io);
  error_code ec;
  auto results = resolver.resolve(target->host, std::to_string(target->port), ec);
  if (ec || results.empty()) {
    throw std::runtime_error("route " + spec.prefix + ": cannot resolve \"" + target->host + "\": " + ec.message());
  }
  udp::endpoint remote = results.begin()->endpoint();
  auto connection = std::make_shared<CoapConnection>(io, remote, std::move(dtls));
  auto client = std::make_shared<CoapClient>(io, spec, settings, std::move(*target), std::move(connection));
  return std::make_unique<CoapUpstream>(std::move(client));
}

}  // namespace coapgw::upstream
