#include "server/persist.hpp"

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

bool write_all_0600(const std::string& path, const std::vector<unsigned char>& bytes, std::string* error) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (error) *error = "cannot create " + tmp + ": " + std::strerror(errno);
    return false;
  }
  ::fchmod(fd, 0600);  // the umask or an older file must not widen it
  std::size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      if (error) *error = "cannot write " + tmp + ": " + std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    if (error) *error = "cannot rename " + tmp + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

std::optional<std::vector<unsigned char>> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

// The installation's HMAC key, created on first use.
std::optional<std::vector<unsigned char>> load_key(const std::string& file, bool create, std::string* error) {
  std::string path = file + ".key";
  if (auto key = read_all(path)) {
    if (key->size() == 32) return key;
    if (error) *error = path + " is not a 32-byte key";
    return std::nullopt;
  }
  if (!create) {
    if (error) *error = path + " is missing";
    return std::nullopt;
  }
  std::vector<unsigned char> key(32);
  if (RAND_bytes(key.data(), 32) != 1) {
    if (error) *error = "no randomness for " + path;
    return std::nullopt;
  }
  if (!write_all_0600(path, key, error)) return std::nullopt;
  return key;
}

std::array<unsigned char, mac_size> mac(const std::vector<unsigned char>& key, const unsigned char* data, std::size_t n) {
  std::array<unsigned char, mac_size> out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data, n, out.data(), &len);
  return out;
}

void put_u64(std::vector<unsigned char>& b, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
void put_u32(std::vector<unsigned char>& b, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
std::uint64_t get_u64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
  return v;
}
std::uint32_t get_u32(const unsigned char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = v << 8 | p[i];
  return v;
}

}  // namespace

bool write_file(const std::string& path, const std::vector<Entry>& entries, std::string* error) {
  auto key = load_key(path, true, error);
  if (!key) return false;
  std::vector<unsigned char> b(std::begin(magic), std::end(magic));
  put_u64(b, static_cast<std::uint64_t>(now_unix_ms()));
  put_u32(b, static_cast<std::uint32_t>(entries.size()));
  for (auto& e : entries) {
    put_u64(b, static_cast<std::uint64_t>(e.last_seen_unix_ms));
    put_u32(b, static_cast<std::uint32_t>(e.state.size()));
    auto* p = reinterpret_cast<const unsigned char*>(e.state.data());
    b.insert(b.end(), p, p + e.state.size());
  }
  auto m = mac(*key, b.data(), b.size());
  b.insert(b.end(), m.begin(), m.end());
  bool ok = write_all_0600(path, b, error);
  OPENSSL_cleanse(b.data(), b.size());  // the buffer held traffic keys
  return ok;
}

std::optional<ReadResult> read_file(const std::string& path, std::chrono::milliseconds max_age, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<ReadResult> {
    if (error) *error = path + ": " + why;
    return std::nullopt;
  };
  auto data = read_all(path);
  if (!data) return fail("cannot read");
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) return fail("mode is wider than 0600, not trusted");
  auto& b = *data;
  if (b.size() < sizeof magic + 12 + mac_size || std::memcmp(b.data(), magic, sizeof magic) != 0)
    return fail("not a coapgw session file (bad magic or too short)");
  auto key = load_key(path, false, error);
  if (!key) return std::nullopt;
  auto body = b.size() - mac_size;
  auto expect = mac(*key, b.data(), body);
  if (CRYPTO_memcmp(expect.data(), b.data() + body, mac_size) != 0)
    return fail("integrity check failed (corrupt, or written by another installation)");
  auto now = now_unix_ms();
  auto created = static_cast<std::int64_t>(get_u64(b.data() + 8));
  if (created > now + 60'000 || now - created >= max_age.count()) return fail("stale (older than sessions.persist.max_age)");
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

void RestoredPool::add(const Address& peer, std::vector<std::byte> state, std::int64_t last_seen_unix_ms) {
  std::lock_guard lock(mutex_);
  by_peer_[peer] = Waiting{std::move(state), last_seen_unix_ms};
  size_.store(by_peer_.size(), std::memory_order_relaxed);
}

std::optional<std::vector<std::byte>> RestoredPool::take(const Address& peer, std::chrono::milliseconds idle_timeout,
                                                          std::int64_t* last_seen_unix_ms) {
  std::lock_guard lock(mutex_);
  auto it = by_peer_.find(peer);
  if (it == by_peer_.end()) return std::nullopt;
  auto waiting = std::move(it->second);
  by_peer_.erase(it);
  size_.store(by_peer_.size(), std::memory_order_relaxed);
  if (now_unix_ms() - waiting.last_seen_unix_ms >= idle_timeout.count()) return std::nullopt;
  if (last_seen_unix_ms != nullptr) *last_seen_unix_ms = waiting.last_seen_unix_ms;
  return std::move(waiting.state);
}

void RestoredPool::put_back(const Address& peer, std::vector<std::byte> state, std::int64_t last_seen_unix_ms) {
  add(peer, std::move(state), last_seen_unix_ms);
}

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
