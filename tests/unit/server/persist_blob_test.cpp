// persist::write_blob/read_blob (the downlink queue beside the session file): round trip with the
// session file's key, and refusal of a flipped byte, a session file, a stale file and a foreign key.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "server/persist.hpp"

using namespace coapgw::server::persist;
using namespace std::chrono_literals;

namespace {

struct PersistBlob : ::testing::Test {
  std::string dir, sessions, path;
  void SetUp() override {
    char tmpl[] = "/tmp/coapgw-blob-XXXXXX";
    dir = mkdtemp(tmpl);
    sessions = dir + "/sessions.bin";
    path = sessions + ".downlink";
  }
  void TearDown() override { std::system(("rm -rf " + dir).c_str()); }
  void flip(const std::string& file, std::size_t at) {
    std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
    f.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(at));
    f.put(static_cast<char>(c ^ 0x01));
  }
};

TEST_F(PersistBlob, RoundTripWithTheSessionFilesKeyAndMode0600) {
  std::string error;
  const std::string bytes("queue\0bytes", 11);
  ASSERT_TRUE(write_blob(path, sessions, bytes, &error)) << error;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(::stat((sessions + ".key").c_str(), &st), 0) << "the key belongs to the session file";
  auto back = read_blob(path, sessions, 1h, &error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(*back, bytes);
  // An empty blob is a valid one.
  ASSERT_TRUE(write_blob(path, sessions, "", &error)) << error;
  back = read_blob(path, sessions, 1h, &error);
  ASSERT_TRUE(back) << error;
  EXPECT_TRUE(back->empty());
}

TEST_F(PersistBlob, FlippedByteIsRefused) {
  std::string error;
  ASSERT_TRUE(write_blob(path, sessions, "some queued requests", &error));
  flip(path, 20);
  EXPECT_FALSE(read_blob(path, sessions, 1h, &error));
  EXPECT_NE(error.find("integrity"), std::string::npos) << error;
}

TEST_F(PersistBlob, SessionFileIsNotABlob) {
  std::string error;
  ASSERT_TRUE(write_file(sessions, {}, &error));
  EXPECT_FALSE(read_blob(sessions, sessions, 1h, &error));
  EXPECT_NE(error.find("bad magic"), std::string::npos) << error;
  ASSERT_TRUE(write_blob(path, sessions, "x", &error));
  EXPECT_FALSE(read_file(path, 1h, &error)) << "a blob read as a session file";
}

TEST_F(PersistBlob, StaleOrForeignIsRefused) {
  std::string error;
  ASSERT_TRUE(write_blob(path, sessions, "x", &error));
  EXPECT_FALSE(read_blob(path, sessions, 0ms, &error));
  EXPECT_NE(error.find("stale"), std::string::npos) << error;
  std::ofstream key(sessions + ".key", std::ios::binary | std::ios::trunc);
  key << std::string(32, 'x');
  key.close();
  EXPECT_FALSE(read_blob(path, sessions, 1h, &error));
  EXPECT_NE(error.find("integrity"), std::string::npos) << error;
}

}  // namespace
