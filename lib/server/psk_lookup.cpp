#include "server/psk_lookup.hpp"

#include <prometheus/counter.h>

#include <algorithm>

#include "common/log.hpp"
#include "common/url.hpp"
#include "metrics/metrics.hpp"
#include "server/registry_answer.hpp"
#include "upstream/forward.hpp"

namespace coapgw::server {

using metrics::PskLookupResult;

namespace {
constexpr std::string_view placeholder = "{identity}";
}

std::string PskLookup::origin_of(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, url.find('/', scheme_end + 3)));
}

std::string PskLookup::path_for(std::string_view url, std::string_view identity) {
  std::string path(url.substr(origin_of(url).size()));
  const auto at = path.find(placeholder);
  if (at != std::string::npos) path.replace(at, placeholder.size(), url::percent_encode_segment(identity));
  return path;
}

PskLookup::PskLookup(Settings settings, std::unique_ptr<upstream::Upstream> client, metrics::Metrics& metrics,
                     Answered answered)
    : settings_(std::move(settings)),
      client_(std::move(client)),
      metrics_(metrics),
      answered_(std::move(answered)),
      cache_(settings_.cache),
      alive_(std::make_shared<bool>(true)) {}

PskLookup::~PskLookup() { shutdown(); }

std::chrono::milliseconds PskLookup::retry_after() const {
  return std::max<std::chrono::milliseconds>(settings_.cache.negative_ttl, std::chrono::seconds(1));
}

void PskLookup::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  *alive_ = false;  // answers still queued on the io_context find nobody
  if (client_) client_->shutdown();
  in_flight_.clear();
  waiting_.clear();
  retry_.clear();
}

PskLookup::Verdict PskLookup::need_key(std::string_view identity, const std::function<Held()>& make_held,
                                       session::TimePoint now) {
  if (cache_.find_fresh(identity, now) != nullptr) {
    metrics_.psk_lookups(PskLookupResult::hit).Increment();
    return Verdict::proceed;
  }
  // Every datagram dropped here (shut down, max_in_flight lookups waiting, the slot's held datagrams
  // full) is counted as a lookup error: the device retransmits; by then a slot may be free.
  auto dropped = [this] {
    metrics_.psk_lookups(PskLookupResult::error).Increment();
    return Verdict::dropped;
  };
  if (shut_down_) return dropped();
  auto it = in_flight_.find(std::string(identity));
  if (it == in_flight_.end()) {
    if (in_flight_.size() >= settings_.max_in_flight) return dropped();
    it = in_flight_.emplace(std::string(identity), Slot{}).first;
    start(it->first);
    it = in_flight_.find(std::string(identity));  // start() never answers synchronously; found again to be safe
    if (it == in_flight_.end()) return dropped();
  }
  if (it->second.held.size() >= max_held_per_slot) return dropped();
  auto held = make_held();
  waiting_[held.key] = it->first;
  it->second.held.push_back(std::move(held));
  return Verdict::held;
}

bool PskLookup::hold_if_waiting(const session::Key& key, const std::function<Held()>& make_held) {
  auto w = waiting_.find(key);
  if (w == waiting_.end()) return false;
  auto it = in_flight_.find(w->second);
  if (it == in_flight_.end()) {
    waiting_.erase(w);
    return false;
  }
  auto& held = it->second.held;
  std::size_t of_key = 0;
  for (const auto& h : held) of_key += h.key == key ? 1 : 0;
  // Past the bounds the datagram is dropped (still "handled": it must not reach the handshake before
  // the datagram with the ClientKeyExchange).
  if (of_key < max_held_per_handshake && held.size() < max_held_per_slot)
    held.push_back(make_held());
  else
    metrics_.psk_lookups(PskLookupResult::error).Increment();
  return true;
}

void PskLookup::start(const std::string& identity) {
  upstream::ForwardRequest request;
  request.method = "GET";
  request.path = path_for(settings_.url, identity);
  std::weak_ptr<bool> alive = alive_;
  client_->forward(std::move(request), [this, alive, identity](upstream::ForwardResponse response) {
    if (auto a = alive.lock(); a && *a) on_answer(identity, response);
  });
}

void PskLookup::on_answer(const std::string& identity, const upstream::ForwardResponse& response) {
  const auto now = settings_.clock();
  std::vector<Held> held;
  if (auto it = in_flight_.find(identity); it != in_flight_.end()) {
    held = std::move(it->second.held);
    in_flight_.erase(it);
  }
  for (const auto& h : held) waiting_.erase(h.key);
  PskLookupResult result = PskLookupResult::error;
  if (response.outcome == upstream::Outcome::timeout) {
    result = PskLookupResult::timeout;
  } else if (response.outcome == upstream::Outcome::ok) {
    if (auto entry = parse_registry_answer(response.code, response.payload)) {
      result = entry->known ? PskLookupResult::miss : PskLookupResult::unknown;
      std::vector<std::string> evicted;
      cache_.put(identity, std::move(*entry), now, &evicted);
      // A live session's entry pushed out of a full cache is asked again on the next tick (a
      // missing entry lets its session stand, so a later ban would not reach it). Due now, so at
      // the front the retry queue stays in time order.
      for (auto& e : evicted)
        if (live_.count(e) != 0) retry_.emplace_front(now, std::move(e));
    }
  }
  metrics_.psk_lookups(result).Increment();
  if (cache_.evictions() != evictions_seen_) {
    metrics_.psk_cache_evictions().Increment(static_cast<double>(cache_.evictions() - evictions_seen_));
    evictions_seen_ = cache_.evictions();
  }
  if (result == PskLookupResult::error || result == PskLookupResult::timeout) {
    log::debug("psk lookup for '" + identity + "' failed: " + std::string(metrics::name(result)));
    if (live_.count(identity) != 0) retry_.emplace_back(now + retry_after(), identity);
  }
  answer_failed_ = result == PskLookupResult::error || result == PskLookupResult::timeout;
  answered_(identity, std::move(held));
  answer_failed_ = false;
}

void PskLookup::session_up(session::Session& s, const std::string& identity) { live_[identity].push_back(&s); }

void PskLookup::ask_again(const std::string& identity, session::TimePoint now) {
  retry_.emplace_back(now + retry_after(), identity);
}

void PskLookup::session_down(session::Session& s, const std::string& identity) {
  auto it = live_.find(identity);
  if (it == live_.end()) return;
  std::erase(it->second, &s);
  if (it->second.empty()) live_.erase(it);
}

const std::vector<session::Session*>* PskLookup::sessions_of(std::string_view identity) const {
  auto it = live_.find(std::string(identity));
  return it == live_.end() ? nullptr : &it->second;
}

void PskLookup::on_tick(session::TimePoint now) {
  std::vector<std::string> expired;
  cache_.expire(now, &expired);
  while (!retry_.empty() && retry_.front().first <= now) {
    expired.push_back(std::move(retry_.front().second));
    retry_.pop_front();
  }
  for (auto& identity : expired) {
    // A live session's entry is refreshed, so a ban or a new key in the registry reaches it within
    // cache_ttl; a refresh that fails (or finds no free slot) is tried again after negative_ttl.
    if (shut_down_ || live_.count(identity) == 0 || in_flight_.count(identity) != 0) continue;
    if (in_flight_.size() >= settings_.max_in_flight) {
      retry_.emplace_back(now + retry_after(), std::move(identity));  // no slot now
      continue;
    }
    auto it = in_flight_.emplace(identity, Slot{}).first;
    start(it->first);
  }
}

}  // namespace coapgw::server
