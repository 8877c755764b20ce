// file:PATH upstream — appends one JSON line per request (see file_record.hpp)
// and answers 2.01 for POST, 2.04 otherwise, once write() has returned.
//
// Each line goes out in one write() on an O_APPEND descriptor, so workers that
// each open the same path never interleave partial lines. reopen() opens the
// path again after log rotation; if that fails the old descriptor is kept.
#pragma once

#include <string>

#include "upstream/forward.hpp"

namespace boost::asio {
class io_context;
}

namespace coapgw::upstream {

class FileSink final : public Upstream {
 public:
  // Throws std::runtime_error when the file cannot be opened (start-up).
  FileSink(boost::asio::io_context& io, std::string path);
  ~FileSink() override;
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  void forward(ForwardRequest request, ForwardDone done) override;
  void reopen() override;
  void shutdown() override;

  const std::string& path() const { return path_; }

 private:
  boost::asio::io_context& io_;
  std::string path_;
  int fd_ = -1;
};

}  // namespace coapgw::upstream
