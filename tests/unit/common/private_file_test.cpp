// Secret files: modes checked on the descriptor that is read, writes never follow planted links.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "common/private_file.hpp"

namespace coapgw::private_file {
namespace {

namespace fs = std::filesystem;

class PrivateFile : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> n{0};
    dir_ = fs::temp_directory_path() / ("coapgw-private-file-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string put(const std::string& name, const std::string& text, mode_t mode) const {
    auto p = path(name);
    std::ofstream(p, std::ios::binary) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  static std::string slurp(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static std::span<const unsigned char> bytes(const std::string& s) {
    return {reinterpret_cast<const unsigned char*>(s.data()), s.size()};
  }
  fs::path dir_;
};

TEST_F(PrivateFile, ReadsAFileWhoseModeIsAllowed) {
  auto p = put("keys.yaml", "- {identity: a, key: b}\n", 0640);
  ReadError e;
  auto got = read(p, ReadPolicy{true, 007}, &e);
  ASSERT_TRUE(got) << e.message;
  EXPECT_EQ(*got, "- {identity: a, key: b}\n");
}

TEST_F(PrivateFile, RefusesAWiderModeWithAClearError) {
  auto p = put("keys.yaml", "secret", 0644);
  ReadError e;
  EXPECT_FALSE(read(p, ReadPolicy{true, 007}, &e));
  EXPECT_EQ(e.sys_errno, 0);
  EXPECT_NE(e.message.find("mode 0644"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find(p), std::string::npos) << e.message;
  auto q = put("data", "secret", 0640);
  EXPECT_FALSE(read(q, ReadPolicy{false, 077}, &e));
  EXPECT_NE(e.message.find("mode 0640"), std::string::npos) << e.message;
}

TEST_F(PrivateFile, ModeIsCheckedOnTheFileReadNotTheLinkName) {
  // A symlink is 0777 itself; what counts is the file behind it (followed) or the refusal (not).
  auto target = put("target", "secret", 0644);
  auto link = path("link");
  fs::create_symlink(target, link);
  ReadError e;
  EXPECT_FALSE(read(link, ReadPolicy{true, 007}, &e));
  EXPECT_NE(e.message.find("mode 0644"), std::string::npos) << e.message;
  ::chmod(target.c_str(), 0600);
  EXPECT_TRUE(read(link, ReadPolicy{true, 007}, &e)) << e.message;
  EXPECT_FALSE(read(link, ReadPolicy{false, 077}, &e));
  EXPECT_EQ(e.sys_errno, ELOOP);
  EXPECT_NE(e.message.find("symbolic link"), std::string::npos) << e.message;
}

TEST_F(PrivateFile, MissingAndNonRegularFilesAreErrors) {
  ReadError e;
  EXPECT_FALSE(read(path("nope"), ReadPolicy{}, &e));
  EXPECT_EQ(e.sys_errno, ENOENT);
  fs::create_directories(path("adir"));
  ::chmod(path("adir").c_str(), 0700);
  EXPECT_FALSE(read(path("adir"), ReadPolicy{}, &e));
  EXPECT_NE(e.message.find("not a regular file"), std::string::npos) << e.message;
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);  // must not block waiting for a writer
  EXPECT_FALSE(read(path("fifo"), ReadPolicy{}, &e));
  EXPECT_NE(e.message.find("not a regular file"), std::string::npos) << e.message;
}

TEST_F(PrivateFile, WriteCreatesMode0600AndLeavesNoTemporaryFile) {
  ::umask(022);
  auto p = path("sessions.bin");
  std::string error;
  ASSERT_TRUE(write_atomic(p, bytes("first"), &error)) << error;
  ASSERT_TRUE(write_atomic(p, bytes("second"), &error)) << error;
  EXPECT_EQ(slurp(p), "second");
  struct stat st{};
  ASSERT_EQ(::lstat(p.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::size_t entries = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1u);
}

TEST_F(PrivateFile, SymlinkAtTheTargetIsReplacedNotWrittenThrough) {
  auto victim = put("victim", "precious", 0644);
  auto p = path("sessions.bin");
  fs::create_symlink(victim, p);
  fs::create_symlink(victim, p + ".tmp");  // the old fixed temporary name
  std::string error;
  ASSERT_TRUE(write_atomic(p, bytes("state"), &error)) << error;
  EXPECT_EQ(slurp(victim), "precious");
  struct stat st{};
  ASSERT_EQ(::lstat(p.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(slurp(p), "state");
}

TEST_F(PrivateFile, SymlinkOrLeftoverAtTheTemporaryNameIsNeverFollowedOrReused) {
  auto victim = put("victim", "precious", 0644);
  auto p = path("sessions.bin");
  auto tmp = p + ".tmp-planted";
  fs::create_symlink(victim, tmp);
  std::string error;
  int err = 0;
  EXPECT_FALSE(detail::write_via(tmp, p, bytes("state"), &error, &err));
  EXPECT_EQ(err, EEXIST);
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_FALSE(fs::exists(p));
  EXPECT_TRUE(fs::is_symlink(tmp));  // not ours: left alone
  auto leftover = put("sessions.bin.tmp-left", "old", 0666);
  EXPECT_FALSE(detail::write_via(leftover, p, bytes("state"), &error, &err));
  EXPECT_EQ(err, EEXIST);
  EXPECT_EQ(slurp(leftover), "old");
}

TEST_F(PrivateFile, WriteIntoAMissingDirectoryFailsCleanly) {
  std::string error;
  EXPECT_FALSE(write_atomic(path("no/such/dir/file"), bytes("x"), &error));
  EXPECT_NE(error.find("cannot create"), std::string::npos) << error;
}

}  // namespace
}  // namespace coapgw::private_file
