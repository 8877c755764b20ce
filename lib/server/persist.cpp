#include "server/persist.hpp"

#include "common/bytes.hpp"
#include "common/private_file.hpp"
#include "common/secret.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

namespace coapgw::server::persist {

namespace {

constexpr char magic[8] = {'C', 'O', 'A', 'P', 'G', 'W', 'P', '1'};
constexpr std::size_t mac_size = 32;
constexpr std::size_t max_entries = 10'000'000;

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Every buffer here holds traffic keys or the HMAC key: wiped when let go, on every path.
using Buffer = std::vector<unsigned char, WipingAllocator<unsigned char>>;

bool write_all_0600(const std::string& path, const Buffer& bytes, std::string* error) {
  return private_file::write_atomic(path, bytes, error);  // O_EXCL|O_NOFOLLOW temp, fsync, rename, fsync dir
}

// Owner-only, never through a symlink, mode checked on the descriptor that is read.
constexpr private_file::ReadPolicy owner_only{false, 077};

std::optional<Buffer> read_all(const std::string& path, std::string* error = nullptr,
                                                   int* sys_errno = nullptr) {
  private_file::ReadError e;
  auto text = private_file::read(path, owner_only, &e);
  if (!text) {
    if (error) *error = e.message;
    if (sys_errno) *sys_errno = e.sys_errno;
    return std::nullopt;
  }
  return Buffer(text->data(), text->data() + text->size());
}

// The installation's HMAC key, created on first use.
std::optional<Buffer> load_key(const std::string& file, bool create, std::string* error) {
  std::string path = file + ".key";
  std::string why;
  int err = 0;
  if (auto key = read_all(path, &why, &err)) {
    if (key->size() == 32) return key;
    if (error) *error = path + " is not a 32-byte key";
    return std::nullopt;
  }
  if (err != ENOENT || !create) {  // a key we may not trust is never silently replaced
    if (error) *error = err == ENOENT ? path + " is missing" : why;
    return std::nullopt;
  }
  Buffer key(32);
  if (RAND_bytes(key.data(), 32) != 1) {
    if (error) *error = "no randomness for " + path;
    return std::nullopt;
  }
  if (!write_all_0600(path, key, error)) return std::nullopt;
  return key;
}

std::array<unsigned char, mac_size> mac(const Buffer& key, const unsigned char* data, std::size_t n) {
  std::array<unsigned char, mac_size> out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data, n, out.data(), &len);
  return out;
}

void put_u64(Buffer& b, std::uint64_t v) { bytes::append_be(b, v, 8); }
void put_u32(Buffer& b, std::uint32_t v) { bytes::append_be(b, v, 4); }
std::uint64_t get_u64(const unsigned char* p) { return bytes::load_be64(p); }
std::uint32_t get_u32(const unsigned char* p) { return bytes::load_be32(p); }

}  // namespace

namespace {

// Appends the HMAC (key "<key_of>.key", created on first use) and writes `b` atomically, mode 0600.
bool seal_and_write(const std::string& path, const std::string& key_of, Buffer& b, std::string* error) {
  auto key = load_key(key_of, true, error);
  if (!key) return false;
  auto m = mac(*key, b.data(), b.size());
  b.insert(b.end(), m.begin(), m.end());
  return write_all_0600(path, b, error);
}

Buffer header(const char (&file_magic)[8]) {
  Buffer b(std::begin(file_magic), std::end(file_magic));
  put_u64(b, static_cast<std::uint64_t>(now_unix_ms()));
  return b;
}

// Reads a file written by seal_and_write after header(file_magic): checks the magic, the HMAC and
// max_age. On success the result holds everything before the HMAC (the header included).
std::optional<Buffer> open_sealed(const std::string& path, const std::string& key_of, const char (&file_magic)[8],
                                  const char* what, std::size_t min_body, std::chrono::milliseconds max_age, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<Buffer> {
    if (error) *error = path + ": " + why;
    return std::nullopt;
  };
  std::string why;
  auto data = read_all(path, &why);  // the mode is checked on the descriptor that is read
  if (!data) {
    if (error) *error = why;
    return std::nullopt;
  }
  auto& b = *data;
  if (b.size() < sizeof file_magic + 8 + min_body + mac_size || std::memcmp(b.data(), file_magic, sizeof file_magic) != 0)
    return fail("not a coapgw " + std::string(what) + " file (bad magic or too short)");
  auto key = load_key(key_of, false, error);
  if (!key) return std::nullopt;
  auto body = b.size() - mac_size;
  auto expect = mac(*key, b.data(), body);
  if (CRYPTO_memcmp(expect.data(), b.data() + body, mac_size) != 0)
    return fail("integrity check failed (corrupt, or written by another installation)");
  auto now = now_unix_ms();
  auto created = static_cast<std::int64_t>(get_u64(b.data() + 8));
  if (created > now + 60'000 || now - created >= max_age.count()) return fail("stale (older than sessions.persist.max_age)");
  OPENSSL_cleanse(b.data() + body, mac_size);
  b.resize(body);
  return data;
}

constexpr char blob_magic[8] = {'C', 'O', 'A', 'P', 'G', 'W', 'Q', '1'};

}  // namespace

bool write_file(const std::string& path, const std::vector<Entry>& entries, std::string* error) {
  Buffer b = header(magic);
  put_u32(b, static_cast<std::uint32_t>(entries.size()));
  for (auto& e : entries) {
    put_u64(b, static_cast<std::uint64_t>(e.last_seen_unix_ms));
    put_u32(b, static_cast<std::uint32_t>(e.state.size()));
    auto* p = reinterpret_cast<const unsigned char*>(e.state.data());
    b.insert(b.end(), p, p + e.state.size());
  }
  return seal_and_write(path, path, b, error);
}

std::optional<ReadResult> read_file(const std::string& path, std::chrono::milliseconds max_age, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<ReadResult> {
    if (error) *error = path + ": " + why;
    return std::nullopt;
  };
  auto data = open_sealed(path, path, magic, "session", 4, max_age, error);
  if (!data) return std::nullopt;
  auto& b = *data;
  const auto body = b.size();
  auto now = now_unix_ms();
  std::size_t count = get_u32(b.data() + 16);
  if (count > max_entries) return fail("too many entries");
  ReadResult r;
  std::size_t pos = 20;
  for (std::size_t i = 0; i < count; ++i) {
    if (pos + 12 > body) return fail("truncated entry");
    auto last_seen = static_cast<std::int64_t>(get_u64(b.data() + pos));
    std::size_t len = get_u32(b.data() + pos + 8);
    pos += 12;
    if (len > body - pos) return fail("truncated entry");
    if (now - last_seen >= max_age.count()) {
      ++r.skipped_stale;
    } else {
      Entry e;
      e.last_seen_unix_ms = last_seen;
      auto* p = reinterpret_cast<const std::byte*>(b.data() + pos);
      e.state.assign(p, p + len);
      r.entries.push_back(std::move(e));
    }
    pos += len;
  }
  if (pos != body) return fail("trailing bytes");
  OPENSSL_cleanse(b.data(), b.size());
  return r;
}

bool write_blob(const std::string& path, const std::string& key_of, std::string_view bytes, std::string* error) {
  Buffer b = header(blob_magic);
  b.insert(b.end(), bytes.begin(), bytes.end());
  return seal_and_write(path, key_of, b, error);
}

std::optional<std::string> read_blob(const std::string& path, const std::string& key_of,
                                     std::chrono::milliseconds max_age, std::string* error) {
  auto data = open_sealed(path, key_of, blob_magic, "downlink queue", 0, max_age, error);
  if (!data) return std::nullopt;
  std::string out(reinterpret_cast<const char*>(data->data()) + 16, data->size() - 16);
  OPENSSL_cleanse(data->data(), data->size());
  return out;
}

RestoredPool::RestoredPool() : clock_(now_unix_ms) {}

void RestoredPool::add(const Address& peer, SecretBytes state, std::int64_t last_seen_unix_ms,
                       std::span<const std::byte> cid) {
  std::lock_guard lock(mutex_);
  by_peer_[peer] = Waiting{std::move(state), last_seen_unix_ms};
  if (!cid.empty()) by_cid_[std::string(reinterpret_cast<const char*>(cid.data()), cid.size())] = peer;
  size_.store(by_peer_.size(), std::memory_order_relaxed);
}

std::optional<Address> RestoredPool::peer_of_cid(std::span<const std::byte> cid) {
  std::lock_guard lock(mutex_);
  auto it = by_cid_.find(std::string(reinterpret_cast<const char*>(cid.data()), cid.size()));
  if (it == by_cid_.end() || by_peer_.count(it->second) == 0) return std::nullopt;
  return it->second;
}

std::optional<SecretBytes> RestoredPool::take(const Address& peer, std::chrono::milliseconds idle_timeout,
                                              std::int64_t* last_seen_unix_ms) {
  std::lock_guard lock(mutex_);
  auto it = by_peer_.find(peer);
  if (it == by_peer_.end()) return std::nullopt;
  auto waiting = std::move(it->second);
  by_peer_.erase(it);
  size_.store(by_peer_.size(), std::memory_order_relaxed);
  if (clock_() - waiting.last_seen_unix_ms >= idle_timeout.count()) return std::nullopt;
  if (last_seen_unix_ms != nullptr) *last_seen_unix_ms = waiting.last_seen_unix_ms;
  return std::move(waiting.state);
}

void RestoredPool::put_back(const Address& peer, SecretBytes state, std::int64_t last_seen_unix_ms) {
  add(peer, std::move(state), last_seen_unix_ms);
}

void RestoredPool::put_back_seen(const Address& peer, SecretBytes state) { add(peer, std::move(state), clock_()); }

std::size_t RestoredPool::drop_if(const std::function<bool(std::span<const std::byte>)>& revoked) {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (auto it = by_peer_.begin(); it != by_peer_.end();) {
    auto& state = it->second.state;
    if (!revoked(state)) {
      ++it;
      continue;
    }
    OPENSSL_cleanse(state.data(), state.size());  // traffic keys
    it = by_peer_.erase(it);
    ++n;
  }
  size_.store(by_peer_.size(), std::memory_order_relaxed);
  return n;
}

}  // namespace coapgw::server::persist
