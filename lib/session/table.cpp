#include "session/table.hpp"

#include <cassert>

namespace coapgw::session {

namespace {
constexpr auto reuse_gap = std::chrono::seconds(1);
}

Table::Table(Context* context, Budget& budget, Settings settings, EventHandler on_event)
    : context_(context),
      budget_(budget),
      settings_(settings),
      on_event_(std::move(on_event)),
      // Worker index in the high bits keeps ids unique across the process and sortable.
      next_id_((static_cast<std::uint64_t>(settings.worker_index) << 48) + 1) {}

Table::~Table() {
  // Free without events: the owner is going away.
  pool_head_.fill(nullptr);
  pool_tail_.fill(nullptr);
  for (auto& entry : by_key_) {
    entry.second->in_pool_ = false;
    budget_.release();
  }
  for (std::size_t i = 0; i < detached_.size(); ++i) budget_.release();
}

Session* Table::find(const Key& key) {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : it->second.get();
}

Session* Table::lookup_and_touch(const Key& key, TimePoint now) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return nullptr;
  mark_used(*it->second, now);
  return it->second.get();
}

void Table::mark_used(Session& s, TimePoint now) {
  if (s.in_pool_ && now - s.last_seen_ >= reuse_gap) ++stats_.reused[static_cast<int>(s.proto_)];
  touch(s, now);
}

Session* Table::create_server(const Key& key, const Address& local, int ifindex, TimePoint now, State initial) {
  assert(find(key) == nullptr);
  if (!make_room(key.proto)) return nullptr;
  Session* s = make(key, local, Type::server, now, initial);
  s->ifindex_ = ifindex;
  pool_push_back(*s);  // unreferenced server sessions are idle
  emit(*s, Event::session_new);
  if (initial == State::established) emit(*s, Event::session_established);
  return s;
}

Session* Table::create_client(const Key& key, const Address& local, TimePoint now) {
  assert(find(key) == nullptr);
  if (!make_room(key.proto)) return nullptr;
  Session* s = make(key, local, Type::client, now);
  s->refcount_ = 1;
  emit(*s, Event::session_new);
  return s;
}

Session* Table::make(const Key& key, const Address& local, Type type, TimePoint now, State state) {
  auto owned = std::unique_ptr<Session>(
      new Session(this, next_id_++, key, local, type, now, static_cast<std::uint16_t>(mid_rng_())));
  Session* s = owned.get();
  s->state_ = state;  // counted below in the state it starts in
  by_key_.emplace(key, std::move(owned));
  count(*s, +1);
  ++stats_.created[static_cast<int>(key.proto)];
  return s;
}

Session* Table::oldest_idle() const {
  Session* oldest = nullptr;
  for (auto* head : pool_head_) {
    if (head != nullptr && (oldest == nullptr || head->last_seen_ < oldest->last_seen_)) oldest = head;
  }
  return oldest;
}

Session* Table::reclaim_candidate(Proto newcomer) const {
  // Idle unauthenticated sessions (plain UDP, TCP, WebSocket) go first, whatever their age:
  // otherwise a flood of fresh (possibly spoofed) plain sessions would steer an authenticated
  // newcomer onto a device's session. An unauthenticated newcomer never displaces an
  // authenticated session, and a plain UDP newcomer (its address unproven) displaces plain UDP only.
  if (newcomer == Proto::udp) return pool_head_[static_cast<int>(Proto::udp)];
  Session* oldest = nullptr;
  for (std::size_t p = 0; p < proto_count; ++p) {
    Session* head = pool_head_[p];
    if (head != nullptr && !authenticated(static_cast<Proto>(p)) &&
        (oldest == nullptr || head->last_seen_ < oldest->last_seen_))
      oldest = head;
  }
  if (oldest != nullptr || !authenticated(newcomer)) return oldest;
  return oldest_idle();
}

bool Table::make_room(Proto newcomer) {
  // Another worker can take a freed slot between our reclaim and our acquire; a few rounds settle it.
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (budget_.try_acquire()) return true;
    Session* victim = reclaim_candidate(newcomer);
    if (victim == nullptr) break;
    close(*victim, CloseReason::evicted);
  }
  ++stats_.refused_full;
  return false;
}

void Table::touch(Session& s, TimePoint now) {
  if (now > s.last_seen_) s.last_seen_ = now;
  if (s.in_pool_ && &s != pool_tail_[static_cast<int>(s.proto_)]) {
    pool_remove(s);
    pool_push_back(s);
  }
}

bool Table::move_remote(Session& s, const Address& remote) {
  if (s.closed_ || s.extras_) return false;
  const Key to{remote, s.key_port_, s.proto_, s.endpoint_};
  if (by_key_.count(to) != 0) return false;
  auto it = by_key_.find(s.key());
  assert(it != by_key_.end() && it->second.get() == &s);
  auto owned = std::move(it->second);
  by_key_.erase(it);
  s.remote_ = remote;
  by_key_.emplace(to, std::move(owned));
  return true;
}

void Table::close(Session& s, CloseReason reason) {
  if (s.closed_) return;
  auto it = by_key_.find(s.key());
  assert(it != by_key_.end() && it->second.get() == &s);
  auto owned = std::move(it->second);
  by_key_.erase(it);
  if (s.in_pool_) pool_remove(s);
  count(s, -1);
  s.closed_ = true;
  ++stats_.closed[static_cast<int>(s.proto_)][static_cast<int>(reason)];
  emit(s, Event::session_closed, reason);
  if (s.refcount_ > 0) {
    detached_.emplace(&s, std::move(owned));
  } else {
    owned.reset();
    budget_.release();
  }
}

void Table::free(Session& s) {
  // Not found while close() is still running its event handler: close() frees it afterwards.
  auto it = detached_.find(&s);
  if (it == detached_.end()) return;
  detached_.erase(it);
  budget_.release();
}

std::size_t Table::expire(TimePoint now) {
  std::size_t n = 0;
  for (auto& head : pool_head_) {
    while (head != nullptr && head->last_seen_ + settings_.idle_timeout <= now) {
      close(*head, CloseReason::idle_timeout);  // moves head on
      ++n;
    }
  }
  return n;
}

std::optional<TimePoint> Table::next_expiry() const {
  const Session* oldest = oldest_idle();
  if (oldest == nullptr) return std::nullopt;
  return oldest->last_seen_ + settings_.idle_timeout;
}

void Table::close_all(CloseReason reason) {
  while (!by_key_.empty()) close(*by_key_.begin()->second, reason);
}

Session* Table::find_by_id(std::uint64_t id) const {
  for (auto& [key, s] : by_key_)
    if (s->id_ == id) return s.get();
  return nullptr;
}

void Table::pool_push_back(Session& s) {
  // Keep each pool ordered by last use: a session released after a long exchange is as fresh as the
  // newest pool member, never older, so expiry from the head stays exact.
  const int p = static_cast<int>(s.proto_);
  Session*& head = pool_head_[p];
  Session*& tail = pool_tail_[p];
  if (tail != nullptr && s.last_seen_ < tail->last_seen_) s.last_seen_ = tail->last_seen_;
  s.lru_prev_ = tail;
  s.lru_next_ = nullptr;
  if (tail != nullptr) tail->lru_next_ = &s;
  else head = &s;
  tail = &s;
  if (!s.in_pool_) {
    s.in_pool_ = true;
    ++idle_count_;
    counts_.idle[p].fetch_add(1, std::memory_order_relaxed);
  }
}

void Table::pool_remove(Session& s) {
  const int p = static_cast<int>(s.proto_);
  if (s.lru_prev_ != nullptr) s.lru_prev_->lru_next_ = s.lru_next_;
  else pool_head_[p] = s.lru_next_;
  if (s.lru_next_ != nullptr) s.lru_next_->lru_prev_ = s.lru_prev_;
  else pool_tail_[p] = s.lru_prev_;
  s.lru_prev_ = s.lru_next_ = nullptr;
  if (s.in_pool_) {
    s.in_pool_ = false;
    --idle_count_;
    counts_.idle[p].fetch_sub(1, std::memory_order_relaxed);
  }
}

void Table::on_reference(Session& s) {
  if (s.in_pool_) pool_remove(s);
}

void Table::on_release(Session& s) {
  if (s.closed_) {
    free(s);
    return;
  }
  if (s.type_ == Type::client) {
    // Client sessions are freed at 0, dropping whatever they still had queued.
    close(s, CloseReason::disconnected);
    return;
  }
  pool_push_back(s);
}

void Table::on_state_change(Session& s, State from, State to) {
  if (s.closed_) return;
  auto& row = counts_.by_pts[static_cast<int>(s.proto_)][static_cast<int>(s.type_)];
  row[static_cast<int>(from)].fetch_sub(1, std::memory_order_relaxed);
  row[static_cast<int>(to)].fetch_add(1, std::memory_order_relaxed);
  if (to == State::established) emit(s, Event::session_established);
}

void Table::on_type_change(Session& s, Type from, Type to) {
  auto& by_type = counts_.by_pts[static_cast<int>(s.proto_)];
  by_type[static_cast<int>(from)][static_cast<int>(s.state_)].fetch_sub(1, std::memory_order_relaxed);
  by_type[static_cast<int>(to)][static_cast<int>(s.state_)].fetch_add(1, std::memory_order_relaxed);
}

void Table::count(Session& s, int delta) {
  counts_.by_pts[static_cast<int>(s.proto_)][static_cast<int>(s.type_)][static_cast<int>(s.state_)]
      .fetch_add(delta, std::memory_order_relaxed);
}

void Table::emit(Session& s, Event e, std::optional<CloseReason> r) {
  if (on_event_) on_event_(s, EventInfo{e, r});
}

}  // namespace coapgw::session
