#include "server/blockwise_cache.hpp"

#include <algorithm>
#include <cstring>

#include "common/bytes.hpp"

namespace coapgw::server {

namespace {
// Keys are built on every request, so in one allocation with bulk copies.
class KeyBuilder {
 public:
  explicit KeyBuilder(std::size_t capacity) { k_.reserve(capacity); }
  KeyBuilder& u64(std::uint64_t v) {
    char b[8];
    std::memcpy(b, &v, sizeof b);  // host order: keys never leave the process
    k_.append(b, sizeof b);
    return *this;
  }
  KeyBuilder& byte(std::uint8_t v) {
    k_.push_back(static_cast<char>(v));
    return *this;
  }
  // Length-prefixed, so no two different tuples give the same key.
  KeyBuilder& field(std::string_view v) {
    u64(v.size());
    k_.append(v);
    return *this;
  }
  std::string take() { return std::move(k_); }

 private:
  std::string k_;
};

std::string_view as_view(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// FNV-1a, 64 bits: not a security property, only "equal bytes, equal tag; different bytes, almost
// surely a different tag".
std::uint64_t fnv1a(std::uint64_t h, std::span<const std::byte> bytes) {
  for (std::byte b : bytes) {
    h ^= std::to_integer<std::uint64_t>(b);
    h *= 0x100000001b3ull;
  }
  return h;
}
}  // namespace

std::string answer_key(std::uint64_t session, std::uint8_t method, std::string_view path, std::string_view query,
                       std::optional<std::uint16_t> accept, std::span<const std::byte> fetch_body) {
  return KeyBuilder(49 + path.size() + query.size() + fetch_body.size())
      .u64(session)
      .byte(method)
      .field(path)
      .field(query)
      .u64(accept ? 0x10000u | *accept : 0)
      .field(as_view(fetch_body))
      .take();
}

std::string upload_key(std::uint64_t session, std::uint8_t method, std::string_view path, std::string_view query,
                       std::span<const std::byte> request_tag) {
  return KeyBuilder(41 + path.size() + query.size() + request_tag.size())
      .u64(session)
      .byte(method)
      .field(path)
      .field(query)
      .field(as_view(request_tag))
      .take();
}

std::vector<std::byte> derived_etag(std::uint8_t code, std::optional<std::uint16_t> content_format,
                                    std::span<const std::byte> body) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  std::byte head[] = {std::byte{code}, std::byte(content_format ? 1 : 0), std::byte{0}, std::byte{0}};
  bytes::store_be16(head + 2, content_format.value_or(0));
  h = fnv1a(h, head);
  h = fnv1a(h, body);
  std::vector<std::byte> tag(8);
  for (int i = 0; i < 8; ++i) tag[i] = std::byte((h >> (8 * i)) & 0xff);
  return tag;
}

BlockwiseCache::Reassembly* BlockwiseCache::find_reassembly(const std::string& key) {
  auto it = reassemblies_.find(key);
  return it == reassemblies_.end() ? nullptr : &it->second;
}

std::pair<BlockwiseCache::Reassembly*, BlockwiseCache::Admit> BlockwiseCache::start_reassembly(
    std::uint64_t session, const std::string& key, TimePoint expires) {
  if (auto it = reassemblies_.find(key); it != reassemblies_.end()) {
    it->second.body.clear();
    it->second.expires = expires;
    return {&it->second, Admit::ok};
  }
  auto& per = sessions_[session];
  if (per.reassemblies >= limits_.max_reassemblies_per_session) return {nullptr, Admit::session_full};
  if (reassemblies_.size() >= limits_.max_reassemblies) {
    if (per.empty()) sessions_.erase(session);
    return {nullptr, Admit::worker_full};
  }
  ++per.reassemblies;
  auto& ra = reassemblies_[key];
  ra.session = session;
  ra.expires = expires;
  return {&ra, Admit::ok};
}

void BlockwiseCache::end_reassembly(const std::string& key) {
  if (auto it = reassemblies_.find(key); it != reassemblies_.end()) erase_reassembly(it);
}

void BlockwiseCache::erase_reassembly(std::unordered_map<std::string, Reassembly>::iterator it) {
  auto s = sessions_.find(it->second.session);
  reassemblies_.erase(it);
  if (s == sessions_.end()) return;
  --s->second.reassemblies;
  if (s->second.empty()) sessions_.erase(s);
}

const BlockwiseCache::Answer* BlockwiseCache::find_answer(const std::string& key, TimePoint now) const {
  auto it = answers_.find(key);
  if (it == answers_.end() || it->second.answer.expires <= now) return nullptr;
  return &it->second.answer;
}

void BlockwiseCache::touch_answer(const std::string& key, TimePoint expires) {
  if (auto it = answers_.find(key); it != answers_.end()) it->second.answer.expires = expires;
}

BlockwiseCache::Stored BlockwiseCache::store_answer(std::uint64_t session, const std::string& key, Answer answer) {
  drop_answer(key);  // a fresh answer never mixes with the one kept before
  if (answer.body.size() > limits_.max_answer_bytes) return Stored::too_large;
  auto result = Stored::stored;
  auto& per = sessions_[session];
  while (!per.answers.empty() && per.answers.size() >= limits_.max_answers_per_session) {
    auto oldest = answers_.find(per.answers.front());
    per.answers.pop_front();
    if (oldest != answers_.end()) {
      answer_bytes_ -= oldest->second.answer.body.size();
      answers_.erase(oldest);
    }
    result = Stored::stored_evicting_own;
  }
  if (limits_.max_answers_per_session == 0 || answer_bytes_ + answer.body.size() > limits_.max_answer_bytes) {
    if (per.empty()) sessions_.erase(session);
    return Stored::worker_full;
  }
  answer_bytes_ += answer.body.size();
  per.answers.push_back(key);
  answers_.insert_or_assign(key, AnswerSlot{session, std::move(answer)});
  return result;
}

void BlockwiseCache::drop_answer(const std::string& key) {
  if (answers_.empty()) return;  // the common case of a small answer: no hashing
  if (auto it = answers_.find(key); it != answers_.end()) erase_answer(it);
}

void BlockwiseCache::erase_answer(std::unordered_map<std::string, AnswerSlot>::iterator it) {
  answer_bytes_ -= it->second.answer.body.size();
  auto s = sessions_.find(it->second.session);
  if (s != sessions_.end()) {
    auto& q = s->second.answers;
    if (auto pos = std::find(q.begin(), q.end(), it->first); pos != q.end()) q.erase(pos);
  }
  answers_.erase(it);
  if (s != sessions_.end() && s->second.empty()) sessions_.erase(s);
}

void BlockwiseCache::expire(TimePoint now) {
  for (auto it = reassemblies_.begin(); it != reassemblies_.end();) {
    auto next = std::next(it);
    if (it->second.expires <= now) erase_reassembly(it);
    it = next;
  }
  for (auto it = answers_.begin(); it != answers_.end();) {
    auto next = std::next(it);
    if (it->second.answer.expires <= now) erase_answer(it);
    it = next;
  }
}

void BlockwiseCache::drop_session(std::uint64_t session) {
  auto s = sessions_.find(session);
  if (s == sessions_.end()) return;
  auto keys = s->second.answers;  // erase_answer edits the list
  const bool uploads = s->second.reassemblies != 0;
  for (auto& k : keys) drop_answer(k);
  if (uploads) {
    for (auto it = reassemblies_.begin(); it != reassemblies_.end();) {
      auto next = std::next(it);
      if (it->second.session == session) erase_reassembly(it);
      it = next;
    }
  }
}

}  // namespace coapgw::server
