// Observe relayed through coap:// routes; see observe_relays.hpp.
#include "server/observe_relays.hpp"

#include <algorithm>
#include <array>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include "coap/option.hpp"
#include "metrics/metrics.hpp"
#include "session/session.hpp"

namespace coapgw::server {

struct ObserveRelays::Relay {
  session::Session* session = nullptr;  // closed() ends the relay before the session goes
  std::vector<std::byte> token;
  std::shared_ptr<upstream::ObserveHook> hook;
  bool registered = false;             // false: waiting for the first answer
  exchange::ObserveOrder order;
  std::array<std::uint16_t, relay_mids_kept> mids{};
  std::size_t sent = 0;
};

namespace {

std::optional<std::uint32_t> observe_of(const upstream::ForwardResponse& r) {
  for (const auto& [number, value] : r.options)
    if (number == coap::option::observe) return static_cast<std::uint32_t>(coap::decode_uint(value));
  return std::nullopt;
}

std::string text(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace

ObserveRelays::ObserveRelays(Send send, Now now, metrics::Metrics& metrics, std::size_t max_message_size,
                             std::size_t max_relays, std::size_t max_per_session)
    : send_(std::move(send)),
      now_(std::move(now)),
      metrics_(metrics),
      max_message_size_(max_message_size),
      max_relays_(max_relays),
      max_per_session_(max_per_session) {}

ObserveRelays::~ObserveRelays() {
  *alive_ = false;
  for (auto& [key, relay] : relays_) {
    relay->hook->abandoned = true;
    if (relay->hook->cancel) relay->hook->cancel();
  }
  metrics_.observe_relays().Decrement(static_cast<double>(relays_.size()));
}

std::shared_ptr<upstream::ObserveHook> ObserveRelays::on_request(session::Session& s, const coap::MessageView& m) {
  const Key key{s.id(), text(m.token)};
  if (relays_.count(key) != 0) end(key, true);
  const auto* observe = m.find(coap::option::observe);
  const bool registers = observe != nullptr && coap::decode_uint(observe->value) == 0 &&
                         (m.code == coap::code::get || m.code == coap::code::fetch);
  if (!registers) return nullptr;
  const auto mine = per_session_.find(s.id());
  if (relays_.size() >= max_relays_ || (mine != per_session_.end() ? mine->second : 0) >= max_per_session_) {
    metrics_.observe_relays_refused(relays_.size() < max_relays_).Increment();
    return nullptr;
  }
  auto relay = std::make_unique<Relay>();
  relay->session = &s;
  relay->token.assign(m.token.begin(), m.token.end());
  relay->hook = std::make_shared<upstream::ObserveHook>();
  relay->hook->notify = [this, alive = std::weak_ptr<bool>(alive_), key](upstream::ForwardResponse r) {
    if (auto a = alive.lock(); a && *a) notify(key, std::move(r));
  };
  relay->hook->ended = [this, alive = std::weak_ptr<bool>(alive_), key] {
    if (auto a = alive.lock(); a && *a) end(key, false);
  };
  auto hook = relay->hook;
  relays_.emplace(key, std::move(relay));
  ++per_session_[s.id()];
  metrics_.observe_relays().Increment();
  return hook;
}

void ObserveRelays::on_first_answer(session::Session& s, std::span<const std::byte> token,
                                    const upstream::ForwardResponse& r) {
  const Key key{s.id(), text(token)};
  const auto it = relays_.find(key);
  if (it == relays_.end() || it->second->registered) return;
  const auto seq = observe_of(r);
  if (!seq || !it->second->hook->cancel) return end(key, true);  // not observable: it was a plain answer
  it->second->registered = true;
  it->second->order.take(*seq, now_());
}

void ObserveRelays::notify(const Key& key, upstream::ForwardResponse r) {
  const auto it = relays_.find(key);
  if (it == relays_.end() || !it->second->registered) return;
  Relay& relay = *it->second;
  const auto seq = observe_of(r);
  if (seq && !relay.order.take(*seq, now_())) return;  // older than the last one relayed (§3.4)
  session::Session& s = *relay.session;
  // Options in number order: the relayed ones (ETag, Observe, Location-*) and ours.
  std::vector<std::pair<std::uint16_t, std::vector<std::byte>>> options = std::move(r.options);
  std::array<std::byte, 4> buf{};
  if (r.content_format)
    options.emplace_back(coap::option::content_format,
                         std::vector<std::byte>(buf.begin(), buf.begin() + coap::encode_uint(*r.content_format, buf)));
  if (r.max_age)
    options.emplace_back(coap::option::max_age,
                         std::vector<std::byte>(buf.begin(), buf.begin() + coap::encode_uint(*r.max_age, buf)));
  std::stable_sort(options.begin(), options.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::byte> scratch(max_message_size_);
  coap::MessageWriter w(scratch);
  const std::uint16_t mid = s.next_message_id();
  w.header(coap::Type::non, r.code, mid, relay.token);
  for (const auto& [number, value] : options) w.option(number, value);
  w.payload(r.payload);
  if (w.overflow()) {  // no Block2 for notifications: one that does not fit is not relayed
    metrics_.relayed_notifications(false).Increment();
    return;
  }
  relay.mids[relay.sent++ % relay.mids.size()] = mid;
  metrics_.relayed_notifications(true).Increment();
  send_(s, w.bytes());
  if (!seq) end(key, false);  // the upstream's last word (an answer without Observe)
}

bool ObserveRelays::on_rst(session::Session& s, std::uint16_t message_id) {
  for (auto& [key, relay] : relays_) {
    if (key.first != s.id()) continue;
    const auto n = std::min(relay->sent, relay->mids.size());
    if (std::find(relay->mids.begin(), relay->mids.begin() + static_cast<std::ptrdiff_t>(n), message_id) !=
        relay->mids.begin() + static_cast<std::ptrdiff_t>(n)) {
      const Key k = key;  // end() erases the entry the loop stands on
      end(k, true);
      return true;
    }
  }
  return false;
}

void ObserveRelays::closed(const session::Session& s) {
  std::vector<Key> ending;
  for (const auto& [key, relay] : relays_)
    if (key.first == s.id()) ending.push_back(key);
  for (const auto& key : ending) end(key, true);
}

void ObserveRelays::end(const Key& key, bool cancel_upstream) {
  const auto it = relays_.find(key);
  if (it == relays_.end()) return;
  auto relay = std::move(it->second);
  relays_.erase(it);
  if (const auto n = per_session_.find(key.first); n != per_session_.end() && --n->second == 0) per_session_.erase(n);
  // The hook's callbacks stay (one of them may be running now); they find no relay under `key`.
  // Before the first answer there is no cancel yet: the mark makes the upstream forget it then.
  relay->hook->abandoned = true;
  if (cancel_upstream && relay->hook->cancel) relay->hook->cancel();
  metrics_.observe_relays().Decrement();
}

}  // namespace coapgw::server
