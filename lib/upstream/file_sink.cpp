#include "upstream/file_sink.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/log.hpp"
#include "upstream/file_record.hpp"

namespace coapgw::upstream {
namespace {

int open_append(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

}  // namespace

FileSink::FileSink(boost::asio::io_context& io, std::string path) : io_(io), path_(std::move(path)) {
  if (path_.empty()) throw std::runtime_error("file sink: empty path");
  fd_ = open_append(path_);
  if (fd_ < 0) {
    throw std::runtime_error("file sink: cannot open " + path_ + ": " + std::strerror(errno));
  }
}

FileSink::~FileSink() { shutdown(); }

void FileSink::forward(ForwardRequest request, ForwardDone done) {
  ForwardResponse response;
  if (!request.if_match.empty()) {
    // RFC 7252 §5.10.8.1: the sink holds no representation, so no entity-tag (nor "exists") matches.
    // If-None-Match always holds for the same reason: the line is appended.
    response.code = coap_code(4, 12);
    response.outcome = Outcome::ok;
  } else if (fd_ < 0) {
    response.code = coap_code(5, 0);
    response.outcome = Outcome::upstream_error;
  } else {
    const std::string line = format_file_record(request, std::chrono::system_clock::now());
    // One write() per line: O_APPEND makes it atomic with respect to the
    // other workers' descriptors on the same file. A short write only happens
    // when the disk is full; finishing it with a second write could interleave,
    // so it counts as a failure.
    ssize_t written;
    do {
      written = ::write(fd_, line.data(), line.size());
    } while (written < 0 && errno == EINTR);
    if (written == static_cast<ssize_t>(line.size())) {
      response.code = request.method == "POST" ? coap_code(2, 1) : coap_code(2, 4);
      response.outcome = Outcome::ok;
    } else {
      response.code = coap_code(5, 0);
      response.outcome = Outcome::upstream_error;
    }
  }
  boost::asio::post(io_, [done = std::move(done), response = std::move(response)]() mutable {
    done(std::move(response));
  });
}

void FileSink::reopen() {
  const int fd = open_append(path_);
  if (fd < 0) {
    log::warn("file sink: reopen of " + path_ + " failed (" + std::strerror(errno) +
              "), keeping the old file");
    return;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

void FileSink::shutdown() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace coapgw::upstream
