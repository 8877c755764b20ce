#include "net/udp_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace coapgw::net {

namespace {
constexpr std::size_t control_bytes = CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(in_pktinfo));

void set_int(int fd, int level, int name, int value) { ::setsockopt(fd, level, name, &value, sizeof value); }
}  // namespace

std::unique_ptr<UdpSocket> UdpSocket::open(const Address& address, std::string* error) {
  auto fail = [&](const char* what) -> std::unique_ptr<UdpSocket> {
    if (error) *error = std::string(what) + " " + address.to_string() + ": " + std::strerror(errno);
    return nullptr;
  };
  int family = address.is_v6() ? AF_INET6 : AF_INET;
  int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket");
  // SO_REUSEPORT only (no SO_REUSEADDR, which for UDP would let any user bind the port later):
  // the kernel then admits only sockets of our own user into the group.
  set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  // Bigger buffers absorb bursts (the kernel caps them at rmem_max/wmem_max).
  set_int(fd, SOL_SOCKET, SO_RCVBUF, 4 << 20);
  set_int(fd, SOL_SOCKET, SO_SNDBUF, 4 << 20);
  if (family == AF_INET6) {
    set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    set_int(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
  } else {
    set_int(fd, IPPROTO_IP, IP_PKTINFO, 1);
  }
  sockaddr_storage ss{};
  auto len = address.to_sockaddr(&ss, sizeof ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), static_cast<socklen_t>(len)) != 0) {
    auto r = fail("bind");
    ::close(fd);
    return r;
  }
  socklen_t sl = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
  Address bound = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
  return std::unique_ptr<UdpSocket>(new UdpSocket(fd, bound, address.is_unspecified()));
}

std::optional<Address> UdpSocket::probe_exclusive(const Address& address, std::string* error) {
  int family = address.is_v6() ? AF_INET6 : AF_INET;
  int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (error) *error = "socket " + address.to_string() + ": " + std::strerror(errno);
    return std::nullopt;
  }
  if (family == AF_INET6) set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
  sockaddr_storage ss{};
  auto len = address.to_sockaddr(&ss, sizeof ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), static_cast<socklen_t>(len)) != 0) {
    if (error) *error = "bind " + address.to_string() + ": " + std::strerror(errno);
    ::close(fd);
    return std::nullopt;
  }
  socklen_t sl = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
  ::close(fd);
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
}

UdpSocket::~UdpSocket() {
  if (fd_ >= 0) ::close(fd_);
}

struct ReceiveBatch::Impl {
  std::array<std::array<std::byte, slot_bytes>, slots> buffers;
  std::array<std::array<char, control_bytes>, slots> control;
  std::array<sockaddr_storage, slots> peers;
  std::array<iovec, slots> iov;
  std::array<mmsghdr, slots> msgs;
};

namespace {
// The two lengths the kernel overwrites in a slot it filled; everything else in the header stays.
void reset_lengths(mmsghdr& msg) {
  msg.msg_hdr.msg_namelen = sizeof(sockaddr_storage);
  msg.msg_hdr.msg_controllen = control_bytes;
  msg.msg_hdr.msg_flags = 0;
  msg.msg_len = 0;
}
}  // namespace

ReceiveBatch::ReceiveBatch() : impl_(std::make_unique<Impl>()) {
  out_.reserve(slots);
  auto& m = *impl_;
  // The headers point at fixed buffers: set up once. A wake-up at low load brings one or two
  // datagrams, so preparing all 32 slots on every call was most of this function's work.
  for (std::size_t i = 0; i < slots; ++i) {
    m.iov[i] = iovec{m.buffers[i].data(), slot_bytes};
    auto& h = m.msgs[i].msg_hdr;
    h.msg_name = &m.peers[i];
    h.msg_iov = &m.iov[i];
    h.msg_iovlen = 1;
    h.msg_control = m.control[i].data();
    reset_lengths(m.msgs[i]);
  }
}
ReceiveBatch::~ReceiveBatch() = default;

std::span<const ReceivedDatagram> ReceiveBatch::receive(const UdpSocket& socket) {
  auto& m = *impl_;
  // Only the slots the previous call filled have lengths the kernel changed.
  for (std::size_t i = 0; i < filled_; ++i) reset_lengths(m.msgs[i]);
  filled_ = 0;
  out_.clear();
  int n = ::recvmmsg(socket.fd(), m.msgs.data(), slots, MSG_DONTWAIT, nullptr);
  if (n < 0) {
    last_error_ = (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : errno;
    filled_ = 1;  // a failed call may have written the first header: reset it next time
    return {};
  }
  filled_ = static_cast<std::size_t>(n);
  last_error_ = 0;
  for (int i = 0; i < n; ++i) {
    auto& h = m.msgs[i].msg_hdr;
    ReceivedDatagram d;
    d.peer = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&m.peers[i]));
    d.local = socket.bound_address();
    d.truncated = (h.msg_flags & MSG_TRUNC) != 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        in_pktinfo pi;
        std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
        std::array<std::uint8_t, 4> ip;
        std::memcpy(ip.data(), &pi.ipi_addr, 4);
        d.local = Address::v4(ip, socket.bound_address().port());
        d.ifindex = pi.ipi_ifindex;
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
        in6_pktinfo pi;
        std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
        std::array<std::uint8_t, 16> ip;
        std::memcpy(ip.data(), &pi.ipi6_addr, 16);
        d.local = Address::v6(ip, socket.bound_address().port());
        d.ifindex = static_cast<int>(pi.ipi6_ifindex);
      }
    }
    d.data = std::span<const std::byte>(m.buffers[i].data(), std::min<std::size_t>(m.msgs[i].msg_len, slot_bytes));
    out_.push_back(d);
  }
  return out_;
}

struct SendBatch::Impl {
  struct Slot {
    sockaddr_storage peer;
    std::array<char, control_bytes> control;
    iovec iov;
    std::vector<std::byte> data;
  };
  std::array<Slot, max_batch> slots;
  std::array<mmsghdr, max_batch> msgs;
  std::size_t count = 0;
  UdpSocket* socket = nullptr;
};

SendBatch::SendBatch() : impl_(std::make_unique<Impl>()) {
  for (auto& s : impl_->slots) s.data.reserve(1500);
}
SendBatch::~SendBatch() { flush(); }

std::size_t SendBatch::pending() const { return impl_->count; }

void SendBatch::add(UdpSocket& socket, const Address& peer, const Address& source,
                    std::span<const std::byte> data) {
  auto& m = *impl_;
  if (m.count == max_batch || (m.socket != nullptr && m.socket != &socket)) flush();
  m.socket = &socket;
  auto& slot = m.slots[m.count];
  slot.data.assign(data.begin(), data.end());
  auto& msg = m.msgs[m.count];
  std::memset(&msg, 0, sizeof msg);
  auto& h = msg.msg_hdr;
  h.msg_name = &slot.peer;
  h.msg_namelen = static_cast<socklen_t>(peer.to_sockaddr(&slot.peer, sizeof slot.peer));
  slot.iov = iovec{slot.data.data(), slot.data.size()};
  h.msg_iov = &slot.iov;
  h.msg_iovlen = 1;
  if (socket.wildcard() && source.family() == peer.family() && !source.is_unspecified()) {
    // Answer from the address the request came to (a host with several addresses on one wildcard bind).
    std::memset(slot.control.data(), 0, slot.control.size());
    h.msg_control = slot.control.data();
    cmsghdr* c;
    if (source.is_v4()) {
      h.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
      c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = IPPROTO_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
      in_pktinfo pi{};
      std::memcpy(&pi.ipi_spec_dst, source.ip_bytes(), 4);
      std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    } else {
      h.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
      c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = IPPROTO_IPV6;
      c->cmsg_type = IPV6_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
      in6_pktinfo pi{};
      std::memcpy(&pi.ipi6_addr, source.ip_bytes(), 16);
      std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    }
  }
  ++m.count;
}

void SendBatch::flush() {
  auto& m = *impl_;
  std::size_t done = 0;
  while (done < m.count) {
    int n = ::sendmmsg(m.socket->fd(), m.msgs.data() + done, static_cast<unsigned>(m.count - done), MSG_DONTWAIT);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      // Drop the datagram that failed (full buffer, unreachable peer) and go on with the rest:
      // UDP is lossy by contract and CoAP retransmits.
      ++dropped_;
      ++m.socket->send_errors_;
      ++done;
      continue;
    }
    done += static_cast<std::size_t>(n);
    sent_ += static_cast<std::uint64_t>(n);
  }
  m.count = 0;
}

}  // namespace coapgw::net
