// coapgw-bench CID channel — coapgw's DTLS engine over a device socket (see cid_channel.hpp).
#include "cid_channel.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/address.hpp"
#include "dtls/client_context.hpp"

namespace coapgw::bench {

namespace {
auto now() { return std::chrono::steady_clock::now(); }
}  // namespace

std::unique_ptr<SecureChannel> CidChannel::start(dtls::ClientContext& context, int fd, const std::string& server) {
  const auto peer = Address::parse(server);
  if (!peer) return nullptr;
  dtls::Output out;
  auto engine = context.connect(*peer, out, now());
  if (!engine) return nullptr;
  std::unique_ptr<CidChannel> channel(new CidChannel(fd, std::move(engine)));
  if (!channel->flush(out)) return nullptr;
  return channel;
}

CidChannel::CidChannel(int fd, std::unique_ptr<dtls::Engine> engine) : engine_(std::move(engine)), fd_(fd) {}

CidChannel::~CidChannel() = default;

bool CidChannel::flush(dtls::Output& out) {
  for (const auto& d : out.datagrams) {
    if (::send(fd_, d.data(), d.size(), 0) < 0) ++send_errors_;  // lost like any datagram, but counted
  }
  for (auto& p : out.plaintexts) plaintexts_.emplace_back(p.begin(), p.end());
  const bool open = !out.closed;
  out.clear();
  return open;
}

HandshakeStatus CidChannel::continue_handshake() {
  std::array<std::byte, 2048> buffer{};
  for (int round = 0; round < 16 && engine_->state() == dtls::Engine::State::handshake; ++round) {
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n < 0) break;  // EAGAIN (or an ICMP error: the handshake timeout decides)
    dtls::Output out;
    engine_->on_datagram(std::span<const std::byte>(buffer.data(), static_cast<std::size_t>(n)), out, now());
    if (!flush(out)) return HandshakeStatus::failed;
  }
  switch (engine_->state()) {
    case dtls::Engine::State::established: return HandshakeStatus::done;
    case dtls::Engine::State::closed: return HandshakeStatus::failed;
    case dtls::Engine::State::handshake: break;
  }
  return HandshakeStatus::in_progress;
}

bool CidChannel::send(std::span<const std::byte> datagram) {
  dtls::Output out;
  const bool sealed = engine_->send(datagram, out);
  return flush(out) && sealed;
}

ReceiveResult CidChannel::receive(std::span<std::byte> buffer) {
  std::array<std::byte, 2048> datagram{};
  while (plaintexts_.empty()) {
    const ssize_t n = ::recv(fd_, datagram.data(), datagram.size(), 0);
    if (n < 0) {
      return {errno == EAGAIN || errno == EWOULDBLOCK ? ReceiveStatus::would_block : ReceiveStatus::error, 0};
    }
    dtls::Output out;
    engine_->on_datagram(std::span<const std::byte>(datagram.data(), static_cast<std::size_t>(n)), out, now());
    if (!flush(out)) return {ReceiveStatus::closed, 0};
  }
  const auto& p = plaintexts_.front();
  const std::size_t size = std::min(p.size(), buffer.size());
  std::memcpy(buffer.data(), p.data(), size);
  plaintexts_.pop_front();
  return {ReceiveStatus::datagram, size};
}

void CidChannel::on_timer() {
  dtls::Output out;
  engine_->on_timer(out, now());
  flush(out);
}

void CidChannel::close() {
  dtls::Output out;
  engine_->close(out);
  flush(out);
}

std::uint64_t CidChannel::lost() const { return engine_->bad_records() + send_errors_; }

std::string CidChannel::connection_id() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (const auto b : engine_->peer_connection_id()) {
    hex += digits[std::to_integer<unsigned>(b) >> 4];
    hex += digits[std::to_integer<unsigned>(b) & 15];
  }
  return hex;
}

bool CidChannel::rebind(int fd) {
  if (engine_->state() != dtls::Engine::State::established || engine_->peer_connection_id().empty()) return false;
  fd_ = fd;
  return true;
}

}  // namespace coapgw::bench
