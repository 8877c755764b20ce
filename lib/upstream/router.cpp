#include "upstream/router.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <stdexcept>

#include "coap/option.hpp"
#include "common/url.hpp"
#include "upstream/coap_upstream.hpp"
#include "upstream/file_sink.hpp"
#include "upstream/mapping.hpp"
#include "upstream/http_upstream.hpp"

namespace coapgw::upstream {
namespace {

namespace asio = boost::asio;

void post_response(asio::io_context& io, ForwardDone done, ForwardResponse response) {
  asio::post(io, [done = std::move(done), response = std::move(response)]() mutable {
    done(std::move(response));
  });
}

std::unique_ptr<Upstream> make_upstream(asio::io_context& io, const RouteSpec& spec,
                                        const CoapClientSettings& coap) {
  const std::string_view url = spec.upstream;
  if (url.starts_with("http://") || url.starts_with("https://")) return make_http_upstream(io, spec);
  if (url.starts_with("file:")) return std::make_unique<FileSink>(io, std::string(url.substr(5)));
  if (url.starts_with("coap://") || url.starts_with("coaps://")) return make_coap_upstream(io, spec, coap);
  throw std::runtime_error("route " + spec.prefix + ": unknown upstream scheme in \"" + spec.upstream +
                           "\" (http, https, coap, coaps, file)");
}

void validate(const RouteSpec& spec) {
  const std::string& p = spec.prefix;
  if (p.empty() || p.front() != '/') {
    throw std::runtime_error("route \"" + p + "\": prefix must start with '/'");
  }
  if (p.size() > 1 && p.back() == '/') {
    throw std::runtime_error("route \"" + p + "\": prefix must not end with '/'");
  }
  if (spec.timeout.count() <= 0) throw std::runtime_error("route " + p + ": timeout must be > 0");
  if (spec.max_in_flight == 0) throw std::runtime_error("route " + p + ": max_in_flight must be > 0");
}

// A Location-Path the upstream gave relative to its own root misses the prefix a strip_prefix route
// removed from the request: it goes back in front, so the device can use the location with us.
void restore_prefix(std::string_view stripped, ForwardResponse& response) {
  if (stripped.empty() || stripped == "/") return;
  bool has_location = false;
  for (auto& [number, value] : response.options)
    has_location = has_location || number == coap::option::location_path || number == coap::option::location_query;
  if (!has_location) return;
  auto prefix = url::split_path(stripped);
  std::size_t count = prefix.size();
  for (auto& o : response.options)
    count += o.first == coap::option::location_path || o.first == coap::option::location_query;
  if (count > max_location_options) {
    // Too long to relay whole (the answer's option room is bounded): no location rather than a wrong one.
    std::erase_if(response.options, [](const auto& o) {
      return o.first == coap::option::location_path || o.first == coap::option::location_query;
    });
    return;
  }
  std::vector<std::pair<std::uint16_t, std::vector<std::byte>>> options;
  for (auto& seg : prefix) {
    auto* p = reinterpret_cast<const std::byte*>(seg.data());
    options.emplace_back(coap::option::location_path, std::vector<std::byte>(p, p + seg.size()));
  }
  // Before the upstream's own Location-Path options: the answer's options are sorted stably by number.
  for (auto& o : response.options) options.push_back(std::move(o));
  response.options = std::move(options);
}

}  // namespace

// Per-route counters live behind a shared_ptr so that a request still in
// flight when its Router is swapped out on reload releases its slot safely.
struct RouteCounters {
  std::size_t in_flight = 0;
};

struct Router::Route {
  RouteSpec spec;
  std::unique_ptr<Upstream> upstream;
  std::shared_ptr<RouteCounters> counters = std::make_shared<RouteCounters>();
};

namespace {

// One forwarded request as the Router sees it: whichever of the upstream's
// answer and the route timeout comes first answers the caller.
struct Pending {
  Pending(asio::io_context& io, ForwardDone d, std::shared_ptr<RouteCounters> c)
      : timer(io), done(std::move(d)), counters(std::move(c)) {}
  asio::steady_timer timer;
  ForwardDone done;
  std::shared_ptr<RouteCounters> counters;
  bool answered = false;

  void answer(ForwardResponse response) {
    if (answered) return;
    answered = true;
    auto d = std::move(done);
    d(std::move(response));
  }
};

}  // namespace

Router::Router(boost::asio::io_context& io, std::vector<RouteSpec> routes, CoapClientSettings coap) : io_(io) {
  routes_.reserve(routes.size());
  for (auto& spec : routes) {
    validate(spec);
    auto route = std::make_unique<Route>();
    route->upstream = make_upstream(io_, spec, coap);
    route->spec = std::move(spec);
    routes_.push_back(std::move(route));
  }
}

Router::~Router() { shutdown(); }

std::optional<Router::Match> Router::match(std::string_view path) const {
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const auto& r = routes_[i];
    const std::string& prefix = r->spec.prefix;
    const bool root = prefix == "/";
    if (!path.starts_with(prefix)) continue;
    if (!root && path.size() > prefix.size() && path[prefix.size()] != '/') continue;
    std::string upstream_path(path);
    if (r->spec.strip_prefix && !root) {
      upstream_path = std::string(path.substr(prefix.size()));
      if (upstream_path.empty()) upstream_path = "/";
    }
    return Match{&r->spec, r->upstream.get(), std::move(upstream_path), i};
  }
  return std::nullopt;
}

std::vector<std::string> Router::prefixes() const {
  std::vector<std::string> out;
  out.reserve(routes_.size());
  for (const auto& r : routes_) out.push_back(r->spec.prefix);
  return out;
}

void Router::forward(const Match& match, ForwardRequest request, ForwardDone done) {
  Route* route = match.index < routes_.size() && &routes_[match.index]->spec == match.route
                     ? routes_[match.index].get()
                     : nullptr;
  if (!route) {  // a Match from another Router (e.g. across a reload)
    ForwardResponse r;
    r.code = coap_code(5, 0);
    r.outcome = Outcome::upstream_error;
    return post_response(io_, std::move(done), std::move(r));
  }
  auto counters = route->counters;
  if (counters->in_flight >= route->spec.max_in_flight) {
    ForwardResponse r;
    r.code = coap_code(5, 3);
    r.max_age = overloaded_max_age_s;
    r.outcome = Outcome::overloaded;
    return post_response(io_, std::move(done), std::move(r));
  }
  ++counters->in_flight;
  request.path = match.upstream_path;
  auto pending = std::make_shared<Pending>(io_, std::move(done), std::move(counters));
  pending->timer.expires_after(route->spec.timeout);
  pending->timer.async_wait([pending](boost::system::error_code ec) {
    if (ec) return;
    ForwardResponse r;
    r.code = coap_code(5, 4);
    r.outcome = Outcome::timeout;
    pending->answer(std::move(r));
  });
  // The slot is held until the upstream itself answers, even after a
  // timeout, so the bound also caps the upstream's real concurrency.
  // The prefix is copied: the route may be gone (reload) by the time the upstream answers.
  std::string stripped = route->spec.strip_prefix ? route->spec.prefix : std::string();
  route->upstream->forward(std::move(request), [pending, stripped = std::move(stripped)](ForwardResponse response) {
    --pending->counters->in_flight;
    if (!pending->answered) restore_prefix(stripped, response);
    pending->timer.cancel();
    pending->answer(std::move(response));
  });
}

void Router::reopen_files() {
  for (auto& r : routes_) r->upstream->reopen();
}

void Router::shutdown() {
  for (auto& r : routes_) r->upstream->shutdown();
}

}  // namespace coapgw::upstream
