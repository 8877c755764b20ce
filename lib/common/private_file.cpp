#include "common/private_file.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "common/bytes.hpp"

namespace coapgw::private_file {

namespace {

std::string why(const std::string& path, const std::string& what, int err) {
  return path + ": " + what + (err != 0 ? std::string(": ") + std::strerror(err) : std::string());
}

std::string octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::string directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string temp_name(const std::string& path) {
  unsigned char r[8];
  if (RAND_bytes(r, sizeof r) != 1) {
    // Uniqueness only; O_EXCL makes a collision an error, never a shared file.
    auto v = static_cast<unsigned long long>(::getpid()) ^ reinterpret_cast<std::uintptr_t>(&r);
    std::memcpy(r, &v, sizeof r);
  }
  std::string name = path + ".tmp-";
  bytes::append_hex(name, std::span<const unsigned char>(r));
  return name;
}

}  // namespace

std::optional<SecretString> read(const std::string& path, const ReadPolicy& policy, ReadError* error) {
  auto fail = [&](const std::string& what, int err) -> std::optional<SecretString> {
    if (error) {
      auto reason = what + (err != 0 ? std::string(": ") + std::strerror(err) : std::string());
      *error = ReadError{err, reason, path + ": " + reason};
    }
    return std::nullopt;
  };
  // O_NONBLOCK: a FIFO planted at the path must not hang the open; regular files ignore it.
  int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (policy.follow_symlinks ? 0 : O_NOFOLLOW);
  Fd fd(::open(path.c_str(), flags));
  if (fd.get() < 0) {
    int err = errno;
    return fail(err == ELOOP ? "is a symbolic link, not trusted" : "cannot open", err);
  }
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return fail("cannot stat", errno);
  if (!S_ISREG(st.st_mode)) return fail("is not a regular file", 0);
  if ((st.st_mode & policy.forbidden_mode_bits) != 0)
    return fail("mode " + octal(st.st_mode) + " lets users other than its owner" +
                    (policy.forbidden_mode_bits & 070 ? "" : " and group") + " read or change it; not trusted (chmod " +
                    octal(st.st_mode & 0777 & ~policy.forbidden_mode_bits) + ")",
                0);
  std::vector<char, WipingAllocator<char>> buf(static_cast<std::size_t>(st.st_size) + 1);
  std::size_t done = 0;
  for (;;) {
    if (done == buf.size()) buf.resize(buf.size() * 2);  // the file grew since fstat (the old block is wiped)
    auto n = ::read(fd.get(), buf.data() + done, buf.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot read", errno);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return SecretString(std::string_view(buf.data(), done));
}

namespace detail {

bool write_via(const std::string& tmp, const std::string& path, std::span<const unsigned char> bytes,
               std::string* error, int* sys_errno) {
  auto fail = [&](const std::string& what, int err, bool unlink_tmp) {
    if (unlink_tmp) ::unlink(tmp.c_str());
    if (sys_errno) *sys_errno = err;
    if (error) *error = why(tmp, what, err);
    return false;
  };
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600));
  if (fd.get() < 0) return fail("cannot create", errno, false);  // not ours: leave it alone
  if (::fchmod(fd.get(), 0600) != 0) return fail("cannot chmod", errno, true);  // never wider than 0600
  std::size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("cannot write", n < 0 ? errno : EIO, true);
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail("cannot fsync", errno, true);
  if (::close(fd.release()) != 0) return fail("cannot close", errno, true);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename to " + path, errno, true);
  auto dir = directory_of(path);
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0 || ::fsync(dfd.get()) != 0) {
    if (sys_errno) *sys_errno = errno;
    if (error) *error = why(dir, "cannot fsync the directory after renaming " + path, errno);
    return false;
  }
  return true;
}

}  // namespace detail

bool write_atomic(const std::string& path, std::span<const unsigned char> bytes, std::string* error) {
  std::string last;
  for (int attempt = 0; attempt < 4; ++attempt) {  // a fresh random name each time
    int err = 0;
    if (detail::write_via(temp_name(path), path, bytes, &last, &err)) return true;
    if (err != EEXIST) break;  // only a name clash is worth another name
  }
  if (error) *error = last;
  return false;
}

}  // namespace coapgw::private_file
