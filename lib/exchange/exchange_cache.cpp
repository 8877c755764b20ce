#include "exchange/exchange_cache.hpp"

#include <algorithm>
#include <cstring>

namespace coapgw::exchange {

ExchangeCache::ExchangeCache(std::size_t max_entries, std::chrono::milliseconds lifetime)
    : max_entries_(max_entries == 0 ? 1 : max_entries), lifetime_(lifetime) {}

ExchangeCache::Entry* ExchangeCache::lookup(std::uint64_t k) {
  auto it = index_.find(k);
  if (it == index_.end()) return nullptr;
  return &fifo_[it->second - base_seq_];
}

const ExchangeCache::Entry* ExchangeCache::find(std::uint64_t session, std::uint16_t mid, TimePoint now) {
  Entry* e = lookup(key_of(session, mid));
  if (e == nullptr || e->expires <= now) return nullptr;
  return e;
}

std::uint32_t ExchangeCache::fingerprint(std::span<const std::byte> token) {
  // Tokens are at most 8 bytes, chosen by the client: one multiply-xorshift over the bytes and
  // the length (a length of 0..8 keeps "ab" and "ab\0" apart).
  std::uint64_t v = 0;
  if (!token.empty()) std::memcpy(&v, token.data(), std::min<std::size_t>(token.size(), sizeof v));
  v ^= static_cast<std::uint64_t>(token.size()) << 59;
  v *= 0x9E3779B97F4A7C15ull;
  return static_cast<std::uint32_t>(v >> 32) ^ static_cast<std::uint32_t>(v);
}

void ExchangeCache::insert(std::uint64_t session, std::uint16_t mid, TimePoint now, std::uint32_t token_fp) {
  expire(now);
  // Bounded by FIFO slots, not index entries: a key inserted again (a message id reused with
  // another token) leaves a stale slot behind until it is popped, and those count too.
  while (fifo_.size() >= max_entries_ && !fifo_.empty()) {
    if (pop_front()) ++evicted_;
  }
  auto k = key_of(session, mid);
  Entry e;
  e.key = k;
  e.expires = now + lifetime_;
  e.token_fp = token_fp;
  fifo_.push_back(std::move(e));
  // A reused (session, mid) after expiry replaces the old index; the stale FIFO slot is skipped on pop.
  index_[k] = base_seq_ + fifo_.size() - 1;
}

void ExchangeCache::set_response(std::uint64_t session, std::uint16_t mid, std::span<const std::byte> answer,
                                 std::uint32_t token_fp) {
  Entry* e = lookup(key_of(session, mid));
  if (e == nullptr || e->token_fp != token_fp) return;
  e->answered = true;
  auto n = std::min<std::size_t>(answer.size(), 65535);
  e->length = static_cast<std::uint16_t>(n);
  if (n <= inline_bytes) {
    e->heap.reset();
    std::copy_n(answer.begin(), n, e->inline_data.begin());
  } else {
    e->heap = std::make_unique_for_overwrite<std::byte[]>(n);
    std::copy_n(answer.begin(), n, e->heap.get());
  }
}

std::size_t ExchangeCache::expire(TimePoint now) {
  std::size_t n = 0;
  while (!fifo_.empty() && fifo_.front().expires <= now) {
    pop_front();
    ++n;
  }
  return n;
}

bool ExchangeCache::pop_front() {
  const Entry& e = fifo_.front();
  auto it = index_.find(e.key);
  const bool live = it != index_.end() && it->second == base_seq_;
  if (live) index_.erase(it);
  fifo_.pop_front();
  ++base_seq_;
  return live;
}

}  // namespace coapgw::exchange
