// coapgw::exchange::ExchangeCache — per-owner duplicate detection (RFC 7252 4.5).
//
// A CON or NON seen again within EXCHANGE_LIFETIME (NON_LIFETIME) must not be processed twice; a
// duplicate CON gets the same answer again. Entries live here, per worker, rather than in the
// sessions, so an idle session costs nothing for it. All entries share one lifetime, so insertion
// order is expiry order and a FIFO expires them in O(1). The cache is bounded: when full, the
// oldest entry is dropped early (counted), which only narrows the duplicate window under overload.
// Entries are compact (tens of thousands live at once): small answers, the common case, are kept
// inline, and the index maps one 64-bit key per exchange.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <unordered_map>

#include "exchange/transmission.hpp"  // TimePoint

namespace coapgw::exchange {

class ExchangeCache {
 public:
  static constexpr std::size_t inline_bytes = 24;
  struct Entry {
    std::uint64_t key = 0;
    TimePoint expires{};
    std::unique_ptr<std::byte[]> heap;  // answers longer than inline_bytes
    std::uint16_t length = 0;
    bool answered = false;              // false: still being processed (e.g. waiting for an upstream)
    std::uint32_t token_fp = 0;         // fingerprint() of the request's token
    std::array<std::byte, inline_bytes> inline_data{};
    // The datagram sent as answer (empty for a NON without answer).
    std::span<const std::byte> response() const { return {heap ? heap.get() : inline_data.data(), length}; }
  };

  ExchangeCache(std::size_t max_entries, std::chrono::milliseconds lifetime);

  // The live entry for (session, mid), or nullptr.
  const Entry* find(std::uint64_t session, std::uint16_t message_id, TimePoint now);
  // Records a new exchange as in progress (replacing a live entry of the same key). Expires old
  // entries first.
  void insert(std::uint64_t session, std::uint16_t message_id, TimePoint now, std::uint32_t token_fp = 0);
  // Stores the answer for an exchange (no-op when it has expired, was evicted or was replaced by
  // an exchange with another token meanwhile).
  void set_response(std::uint64_t session, std::uint16_t message_id, std::span<const std::byte> answer,
                    std::uint32_t token_fp = 0);

  // A retransmission repeats the token, so a message id seen again with another token is a new
  // exchange, not a duplicate: on plain CoAP an off-path sender who guesses message ids but not the
  // device's tokens cannot make the device's requests look like duplicates of its own.
  static std::uint32_t fingerprint(std::span<const std::byte> token);
  std::size_t expire(TimePoint now);

  // One 64-bit key per (session, message id). Session ids carry the worker in their top 16 bits,
  // the same for every session of one worker, so (id << 16 | mid) is unique within a worker.
  static std::uint64_t key_of(std::uint64_t session, std::uint16_t mid) { return session << 16 | mid; }

  std::size_t size() const { return index_.size(); }
  std::uint64_t evicted() const { return evicted_; }
  std::chrono::milliseconds lifetime() const { return lifetime_; }

 private:
  struct KeyHash {
    std::size_t operator()(std::uint64_t k) const { return static_cast<std::size_t>(k * 0x9E3779B97F4A7C15ull >> 7); }
  };
  Entry* lookup(std::uint64_t k);
  bool pop_front();  // true when the slot was the live entry of its key (not a replaced one)

  std::size_t max_entries_;
  std::chrono::milliseconds lifetime_;
  std::deque<Entry> fifo_;
  std::uint64_t base_seq_ = 0;  // sequence number of fifo_.front()
  std::unordered_map<std::uint64_t, std::uint64_t, KeyHash> index_;
  std::uint64_t evicted_ = 0;
};

}  // namespace coapgw::exchange
