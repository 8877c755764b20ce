#include "exchange/retransmitter.hpp"

#include "session/session.hpp"

namespace coapgw::exchange {

bool Retransmitter::track(session::Session& s, std::uint16_t mid, std::vector<std::byte> message, std::uint64_t tag,
                          TimePoint now, std::optional<Entry>& replaced) {
  const auto key = key_of(s.id(), mid);
  auto it = entries_.find(key);
  if (it == entries_.end() && entries_.size() >= max_entries_) return false;
  Entry e;
  e.session = &s;
  e.message = std::move(message);
  e.tag = tag;
  e.timeout = parameters_.initial_timeout(random_());
  e.deadline = now + e.timeout;
  e.message_id = mid;
  if (it != entries_.end()) {
    replaced = std::move(it->second);
    it->second = std::move(e);
  } else {
    entries_.emplace(key, std::move(e));
  }
  return true;
}

const Retransmitter::Entry* Retransmitter::find(std::uint64_t key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

const Retransmitter::Entry* Retransmitter::find(const session::Session& s, std::uint16_t mid) const {
  return find(key_of(s.id(), mid));
}

std::optional<Retransmitter::Entry> Retransmitter::take(const session::Session& s, std::uint16_t mid) {
  auto it = entries_.find(key_of(s.id(), mid));
  if (it == entries_.end()) return std::nullopt;
  auto e = std::move(it->second);
  entries_.erase(it);
  return e;
}

Retransmitter::Due Retransmitter::on_timer(TimePoint now) {
  Due due;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    if (now < e.deadline) {
      ++it;
      continue;
    }
    if (e.transmissions > parameters_.max_retransmit) {
      due.gave_up.push_back(std::move(e));
      it = entries_.erase(it);
      continue;
    }
    ++e.transmissions;
    e.timeout *= 2;
    e.deadline = now + e.timeout;
    ++retransmissions_;
    due.resend.push_back(it->first);
    ++it;
  }
  return due;
}

std::optional<TimePoint> Retransmitter::next_deadline() const {
  std::optional<TimePoint> next;
  for (auto& [key, e] : entries_) {
    if (!next || e.deadline < *next) next = e.deadline;
  }
  return next;
}

std::vector<Retransmitter::Entry> Retransmitter::take_session(const session::Session& s) {
  std::vector<Entry> out;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.session == &s) {
      out.push_back(std::move(it->second));
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

}  // namespace coapgw::exchange
