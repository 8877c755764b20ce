// coapgw::server::BlockwiseCache — the bounded block-wise state of one worker (RFC 7959).
//
// Owns the Block1 uploads being reassembled and the Block2 answers kept for their follow-up block
// requests. Both are bounded per worker (reassembly count, answer bytes) and per session
// (reassembly count, answer count), so that one source — possibly spoofed, on plain CoAP — can only
// use up its own share. Answers are keyed by the request they answer (session, method, Uri-Path,
// Uri-Query, Accept, FETCH body: see answer_key) and carry the options that were sent with them
// (the ETag first of all), so a follow-up block is always cut from the same representation as
// block 0 and labelled with the same ETag. A fresh answer always replaces the kept one.
// No I/O and no clock: the caller passes the time, so it is unit-tested without sockets.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace coapgw::server {

struct BlockwiseLimits {
  std::size_t max_reassemblies = 1000;             // Block1 uploads in progress, per worker
  std::size_t max_reassemblies_per_session = 4;    // ... per session
  std::size_t max_answer_bytes = 64u << 20;        // Block2 answer bodies kept, per worker
  std::size_t max_answers_per_session = 4;         // ... per session (its oldest makes room)
};

class BlockwiseCache {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Options = std::vector<std::pair<std::uint16_t, std::vector<std::byte>>>;

  struct Reassembly {
    std::uint64_t session = 0;
    std::vector<std::byte> body;
    TimePoint expires{};
  };

  struct Answer {
    std::uint8_t code = 0;
    std::optional<std::uint16_t> content_format;
    std::optional<std::uint32_t> max_age;
    Options options;  // sent with every block: ETag, Location-*
    std::vector<std::byte> body;
    TimePoint expires{};
  };

  enum class Admit { ok, worker_full, session_full };
  enum class Stored { stored, stored_evicting_own, too_large, worker_full };

  explicit BlockwiseCache(BlockwiseLimits limits = {}) : limits_(limits) {}

  // Block1. The upload under `key`, or nullptr.
  Reassembly* find_reassembly(const std::string& key);
  // Starts (or restarts, emptied) the upload under `key`; refused when the worker or the session
  // is at its bound.
  std::pair<Reassembly*, Admit> start_reassembly(std::uint64_t session, const std::string& key, TimePoint expires);
  void end_reassembly(const std::string& key);

  // Block2. The live answer under `key`, or nullptr.
  const Answer* find_answer(const std::string& key, TimePoint now) const;
  void touch_answer(const std::string& key, TimePoint expires);
  // Keeps `answer` under `key`, replacing what was there. At the session's bound its oldest answer
  // makes room; beyond the worker's byte bound nothing is kept (follow-ups then fetch again, or get
  // 4.08 where that would repeat a side effect).
  Stored store_answer(std::uint64_t session, const std::string& key, Answer answer);
  void drop_answer(const std::string& key);

  void expire(TimePoint now);
  // Everything the session holds (it is closed).
  void drop_session(std::uint64_t session);

  std::size_t reassemblies() const { return reassemblies_.size(); }
  std::size_t answers() const { return answers_.size(); }
  std::size_t answer_bytes() const { return answer_bytes_; }
  const BlockwiseLimits& limits() const { return limits_; }
  void set_limits(const BlockwiseLimits& limits) { limits_ = limits; }

 private:
  struct AnswerSlot {
    std::uint64_t session = 0;
    Answer answer;
  };
  struct PerSession {
    std::size_t reassemblies = 0;
    std::deque<std::string> answers;  // oldest first
    bool empty() const { return reassemblies == 0 && answers.empty(); }
  };
  void erase_answer(std::unordered_map<std::string, AnswerSlot>::iterator it);
  void erase_reassembly(std::unordered_map<std::string, Reassembly>::iterator it);

  BlockwiseLimits limits_;
  std::unordered_map<std::string, Reassembly> reassemblies_;
  std::unordered_map<std::string, AnswerSlot> answers_;
  std::unordered_map<std::uint64_t, PerSession> sessions_;
  std::size_t answer_bytes_ = 0;
};

// The request a Block2 answer belongs to: session, method, Uri-Path, Uri-Query, the Accept option
// (another representation) and, for FETCH, the request body (another selection).
std::string answer_key(std::uint64_t session, std::uint8_t method, std::string_view path, std::string_view query,
                       std::optional<std::uint16_t> accept, std::span<const std::byte> fetch_body);
// The upload a Block1 block belongs to: session, method, Uri-Path, Uri-Query and Request-Tag.
std::string upload_key(std::uint64_t session, std::uint8_t method, std::string_view path, std::string_view query,
                       std::span<const std::byte> request_tag);
// An ETag for a Block2 answer whose upstream sent none (8 bytes, a hash of code, Content-Format and
// body): equal for equal representations, so a client can tell (RFC 7959 §2.4) when the blocks it
// is given after the answer was fetched again come from a changed one.
std::vector<std::byte> derived_etag(std::uint8_t code, std::optional<std::uint16_t> content_format,
                                    std::span<const std::byte> body);

}  // namespace coapgw::server
