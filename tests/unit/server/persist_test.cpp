// The sessions.persist file: round trip, and every way a file must be refused rather than trusted.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <atomic>
#include <thread>
#include <fstream>
#include <iterator>

#include "server/persist.hpp"

using namespace coapgw;
using namespace coapgw::server::persist;
using namespace std::chrono_literals;

namespace {

struct PersistFile : ::testing::Test {
  std::string dir;
  std::string path;
  void SetUp() override {
    char tmpl[] = "/tmp/coapgw-persist-XXXXXX";
    dir = mkdtemp(tmpl);
    path = dir + "/sessions.bin";
  }
  void TearDown() override { std::system(("rm -rf " + dir).c_str()); }

  static std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  std::vector<Entry> sample(std::size_t n, std::int64_t last_seen) {
    std::vector<Entry> out;
    for (std::size_t i = 0; i < n; ++i) {
      Entry e;
      e.last_seen_unix_ms = last_seen;
      for (std::size_t j = 0; j < 40 + i; ++j) e.state.push_back(static_cast<std::byte>(i * 7 + j));
      out.push_back(std::move(e));
    }
    return out;
  }
  std::vector<char> bytes() {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
  }
  void overwrite(const std::vector<char>& b) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
  }
};

TEST_F(PersistFile, RoundTripWithMode0600) {
  auto entries = sample(3, now_ms());
  std::string error;
  ASSERT_TRUE(write_file(path, entries, &error)) << error;
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((path + ".key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto r = read_file(path, 1h, &error);
  ASSERT_TRUE(r) << error;
  ASSERT_EQ(r->entries.size(), 3u);
  EXPECT_EQ(r->entries[2].state, entries[2].state);
  EXPECT_EQ(r->skipped_stale, 0u);
}

TEST_F(PersistFile, SessionsOlderThanMaxAgeAreSkipped) {
  auto entries = sample(2, now_ms());
  entries[1].last_seen_unix_ms = now_ms() - 2 * 3600 * 1000;
  std::string error;
  ASSERT_TRUE(write_file(path, entries, &error));
  auto r = read_file(path, 1h, &error);
  ASSERT_TRUE(r) << error;
  EXPECT_EQ(r->entries.size(), 1u);
  EXPECT_EQ(r->skipped_stale, 1u);
}

TEST_F(PersistFile, FlippedByteIsRefused) {
  std::string error;
  ASSERT_TRUE(write_file(path, sample(2, now_ms()), &error));
  auto b = bytes();
  b[30] ^= 0x01;
  overwrite(b);
  EXPECT_FALSE(read_file(path, 1h, &error));
  EXPECT_NE(error.find("integrity"), std::string::npos) << error;
}

TEST_F(PersistFile, TruncatedFileIsRefused) {
  std::string error;
  ASSERT_TRUE(write_file(path, sample(2, now_ms()), &error));
  auto b = bytes();
  b.resize(b.size() - 40);
  overwrite(b);
  EXPECT_FALSE(read_file(path, 1h, &error));
}

TEST_F(PersistFile, ForeignFileIsRefused) {
  std::string error;
  ASSERT_TRUE(write_file(path, sample(1, now_ms()), &error));
  // Another installation: same format, different key.
  std::ofstream key(path + ".key", std::ios::binary | std::ios::trunc);
  key << std::string(32, 'x');
  key.close();
  EXPECT_FALSE(read_file(path, 1h, &error));
  EXPECT_NE(error.find("integrity"), std::string::npos) << error;
}

TEST_F(PersistFile, MissingKeyIsRefused) {
  std::string error;
  ASSERT_TRUE(write_file(path, sample(1, now_ms()), &error));
  ::unlink((path + ".key").c_str());
  EXPECT_FALSE(read_file(path, 1h, &error));
}

TEST_F(PersistFile, StaleFileIsRefused) {
  std::string error;
  ASSERT_TRUE(write_file(path, sample(1, now_ms()), &error));
  EXPECT_FALSE(read_file(path, 0ms, &error));
  EXPECT_NE(error.find("stale"), std::string::npos) << error;
}

TEST_F(PersistFile, WorldReadableFileIsNotTrusted) {
  std::string error;
  ASSERT_TRUE(write_file(path, sample(1, now_ms()), &error));
  ::chmod(path.c_str(), 0644);
  EXPECT_FALSE(read_file(path, 1h, &error));
  EXPECT_NE(error.find("0600"), std::string::npos) << error;
}

// The mode is checked on the descriptor that is read, and a symlink is never followed: a link
// to a 0600 file elsewhere (planted where the daemon will look) is refused.
TEST_F(PersistFile, SymlinkedFileIsNotFollowed) {
  std::string error;
  ASSERT_TRUE(write_file(path, sample(1, now_ms()), &error)) << error;
  ASSERT_EQ(::rename(path.c_str(), (dir + "/elsewhere").c_str()), 0);
  ASSERT_EQ(::symlink((dir + "/elsewhere").c_str(), path.c_str()), 0);
  EXPECT_FALSE(read_file(path, 1h, &error));
  EXPECT_NE(error.find("symbolic link"), std::string::npos) << error;
}

TEST_F(PersistFile, KeyFileOthersCanReadIsNotTrusted) {
  std::string error;
  ASSERT_TRUE(write_file(path, sample(1, now_ms()), &error)) << error;
  ::chmod((path + ".key").c_str(), 0644);
  EXPECT_FALSE(read_file(path, 1h, &error));
  EXPECT_NE(error.find(".key"), std::string::npos) << error;
  EXPECT_NE(error.find("mode 0644"), std::string::npos) << error;
  // Nor is it silently replaced by the next write (that would orphan nothing, but hide the problem).
  EXPECT_FALSE(write_file(path, sample(1, now_ms()), &error));
}

TEST_F(PersistFile, WriteNeverFollowsASymlinkAtTheTemporaryName) {
  const std::string victim = dir + "/victim";
  std::ofstream(victim) << "precious";
  // The fixed temporary names of earlier versions, and the target itself.
  for (const auto& name : {path + ".tmp", path + ".key.tmp", path}) ASSERT_EQ(::symlink(victim.c_str(), name.c_str()), 0);
  std::string error;
  ASSERT_TRUE(write_file(path, sample(2, now_ms()), &error)) << error;
  std::ifstream in(victim, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "precious");
  struct stat st{};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  auto r = read_file(path, 1h, &error);
  ASSERT_TRUE(r) << error;
  EXPECT_EQ(r->entries.size(), 2u);
}

TEST_F(PersistFile, NotOurFormatIsRefused) {
  overwrite(std::vector<char>(100, 'A'));
  std::string error;
  EXPECT_FALSE(read_file(path, 1h, &error));
}

TEST(RestoredPool, TakeOnce) {
  RestoredPool pool;
  auto a = *Address::parse("127.0.0.1:1000");
  EXPECT_TRUE(pool.empty());
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  pool.add(a, {std::byte{1}}, now);
  EXPECT_FALSE(pool.empty());
  EXPECT_FALSE(pool.take(*Address::parse("127.0.0.1:1001"), 300s));
  auto got = pool.take(a, 300s);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->size(), 1u);
  EXPECT_FALSE(pool.take(a, 300s));
  EXPECT_TRUE(pool.empty());
}

TEST(RestoredPool, DeviceQuietLongerThanIdleTimeoutIsNotRestored) {
  RestoredPool pool;
  auto a = *Address::parse("127.0.0.1:1000");
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  pool.add(a, {std::byte{1}}, now - 400'000);
  EXPECT_FALSE(pool.take(a, 300s));
  EXPECT_TRUE(pool.empty());
}

TEST(RestoredPool, PutBackKeepsTheDevicesTimeUnlessItsRecordAuthenticated) {
  std::int64_t wall = 1'000'000'000;
  RestoredPool pool([&] { return wall; });
  auto a = *Address::parse("127.0.0.1:1000");
  pool.add(a, {std::byte{1}}, wall - 200'000);
  std::int64_t last_seen = 0;
  auto state = pool.take(a, 300s, &last_seen);
  ASSERT_TRUE(state);
  EXPECT_EQ(last_seen, wall - 200'000);
  // A datagram that did not authenticate: the device's own time stays, and ends the entry on time.
  pool.put_back(a, std::move(*state), last_seen);
  wall += 100'000;
  EXPECT_FALSE(pool.take(a, 300s));
  // A record that authenticated (held for the registry): the idle time starts again from now.
  pool.add(a, {std::byte{1}}, wall - 200'000);
  state = pool.take(a, 300s);
  ASSERT_TRUE(state);
  pool.put_back_seen(a, std::move(*state));
  wall += 299'000;
  EXPECT_TRUE(pool.take(a, 300s));
}

}  // namespace

// Workers take restored sessions concurrently while the pool is filled (ThreadSanitizer runs this).
TEST(RestoredPool, ConcurrentAddAndTake) {
  RestoredPool pool;
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  constexpr int per_thread = 200;
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto peer = *Address::parse("127.0.0." + std::to_string(t + 1) + ":" + std::to_string(1000 + i));
        pool.add(peer, SecretBytes{std::byte{1}, std::byte{2}}, now);
        if (pool.take(peer, 300s)) taken.fetch_add(1, std::memory_order_relaxed);
        (void)pool.empty();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(taken.load(), 4 * per_thread);
  EXPECT_TRUE(pool.empty());
}
