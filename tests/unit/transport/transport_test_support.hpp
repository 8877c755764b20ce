// Test helpers for stream transports: a deadline poll, and a blocking loopback TCP client that runs a
// client-role StreamConnection over its socket and also records every frame the peer sent (signals
// included, which a StreamConnection keeps to itself).
#pragma once

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <thread>
#include <vector>

#include "transport/stream_connection.hpp"

namespace coapgw::transport::test {

// Checks `done` until it holds or `limit` passes; the short pause only yields the CPU.
template <class F>
bool poll_until(F done, std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

struct ClientHost : StreamConnection::Host {
  boost::asio::ip::tcp::socket* socket = nullptr;
  std::vector<coap::Message> delivered;
  std::vector<coap::Message> sent_by_peer;  // every frame received, in order
  std::vector<StreamClose> closes;
  void deliver(const coap::MessageView& m, StreamTime) override { delivered.push_back(coap::Message::from_view(m)); }
  void send_frame(std::span<const std::byte> frame) override {
    boost::system::error_code ec;
    boost::asio::write(*socket, boost::asio::buffer(frame.data(), frame.size()), ec);
  }
  void closed(StreamClose reason) override { closes.push_back(reason); }
  void refused(StreamRefusal) override {}
};

class Client {
 public:
  explicit Client(std::uint16_t port, StreamSettings settings = {})
      : socket(ioc), conn((settings.framing = coap::Framing::tcp, settings), host) {
    host.socket = &socket;
    // The listener needs its own deadline; a read timeout keeps a failing test from hanging.
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    timeval tv{0, 200000};
    setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  void write_raw(const std::vector<std::byte>& bytes) {
    boost::system::error_code ec;
    boost::asio::write(socket, boost::asio::buffer(bytes.data(), bytes.size()), ec);
  }

  // Reads and feeds the connection until `done` holds, the peer closes, or `limit` passes.
  template <class F>
  bool read_until(F done, std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::array<std::byte, 4096> buf;
    while (!done()) {
      if (eof || std::chrono::steady_clock::now() >= deadline) return done();
      const ssize_t n = ::recv(socket.native_handle(), buf.data(), buf.size(), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        eof = true;
        conn.on_end_of_stream();
        continue;
      }
      if (n < 0) continue;  // read timeout: check the deadline again
      const std::span<const std::byte> got(buf.data(), static_cast<std::size_t>(n));
      record(got);
      conn.on_bytes(got, StreamClock::now());
    }
    return true;
  }

  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket socket;
  ClientHost host;
  StreamConnection conn;
  bool eof = false;

 private:
  void record(std::span<const std::byte> bytes) {
    stream_.insert(stream_.end(), bytes.begin(), bytes.end());
    for (;;) {
      const auto extent = coap::tcp_frame_extent(stream_);
      if (!extent || extent->frame_size > stream_.size()) return;
      const auto size = static_cast<std::size_t>(extent->frame_size);
      coap::MessageView v;
      if (coap::parse_frame(coap::Framing::tcp, std::span(stream_).first(size), v) == coap::FrameError::ok)
        host.sent_by_peer.push_back(coap::Message::from_view(v));
      stream_.erase(stream_.begin(), stream_.begin() + static_cast<std::ptrdiff_t>(size));
    }
  }
  std::vector<std::byte> stream_;
};

}  // namespace coapgw::transport::test
