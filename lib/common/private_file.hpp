// coapgw::private_file — reading and writing files that hold secrets (the PSK keys file, the
// persisted DTLS sessions and their HMAC key) without trusting a path twice.
//
// read() opens once and checks type and mode with fstat on that descriptor, so the file that was
// checked is the file that is read (no stat-then-open race). write_atomic() creates a fresh
// temporary file next to the target with O_CREAT|O_EXCL|O_NOFOLLOW (a planted symlink or a
// leftover temporary file is never followed or reused), mode 0600, writes and fsyncs it, renames it
// over the target (rename replaces a symlink at the target, it does not write through it) and
// fsyncs the directory so the rename itself survives a crash.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <span>
#include <string>

#include "common/secret.hpp"

namespace coapgw::private_file {

struct ReadPolicy {
  bool follow_symlinks = false;
  // Mode bits that make the file untrusted, e.g. 077 (anything beyond the owner) or 007 (others).
  mode_t forbidden_mode_bits = 077;
};

struct ReadError {
  int sys_errno = 0;    // from open/fstat/read; 0 when the file was read but refused
  std::string reason;   // "<why>"
  std::string message;  // "<path>: <why>"
};

// The whole file, or nullopt and why (missing, a symlink when not followed, not a regular file,
// mode too wide, unreadable).
std::optional<SecretString> read(const std::string& path, const ReadPolicy& policy, ReadError* error);

// Replaces `path` atomically with `bytes` in a file of mode 0600; false + error on failure, the
// target untouched and no temporary file left behind.
bool write_atomic(const std::string& path, std::span<const unsigned char> bytes, std::string* error);

namespace detail {
// One attempt through the temporary name `tmp` (exposed for tests: a symlink or file already at
// `tmp` makes it fail without touching what it points to).
bool write_via(const std::string& tmp, const std::string& path, std::span<const unsigned char> bytes,
               std::string* error, int* sys_errno = nullptr);
}  // namespace detail

}  // namespace coapgw::private_file
