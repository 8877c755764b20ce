// net::ReceiveBatch and net::SendBatch on loopback: every datagram of a burst comes out of the
// batches once, with its own peer, length, bytes and local address, whatever the sizes of the
// batches before it (the receive headers are set up once and only the filled slots reset).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "net/udp_socket.hpp"

namespace coapgw::net {
namespace {

const Address kLoopback = Address::v4({127, 0, 0, 1}, 0);

struct Client {
  int fd = -1;
  std::uint16_t port = 0;
  Client() {
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Client() { ::close(fd); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  void send_to(const Address& to, const std::string& payload) const {
    sockaddr_storage ss{};
    auto len = to.to_sockaddr(&ss, sizeof ss);
    ASSERT_EQ(::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&ss),
                       static_cast<socklen_t>(len)),
              static_cast<ssize_t>(payload.size()));
  }
  // Waits up to `ms` for one datagram; empty string when none came.
  std::string receive(int ms) const {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) != 1) return {};
    std::string buffer(8192, '\0');
    auto n = ::recv(fd, buffer.data(), buffer.size(), 0);
    buffer.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
    return buffer;
  }
};

// Datagram `i` of client `c`: a length that varies per datagram (so a slot reused after a longer or
// shorter one would show), the sender and the sequence number in the bytes.
std::string payload(std::size_t c, std::size_t i) {
  std::string p = "c" + std::to_string(c) + "-i" + std::to_string(i) + ":";
  p.resize(p.size() + (c * 37 + i * 101) % 1400, static_cast<char>('a' + (i % 26)));
  return p;
}

// Receives until `expected` datagrams came or two seconds passed (polling, no sleeps).
std::vector<std::pair<ReceivedDatagram, std::string>> drain(ReceiveBatch& batch, const UdpSocket& socket,
                                                            std::size_t expected, std::vector<std::size_t>* sizes) {
  std::vector<std::pair<ReceivedDatagram, std::string>> got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (got.size() < expected && std::chrono::steady_clock::now() < deadline) {
    auto part = batch.receive(socket);
    if (part.empty()) {
      pollfd p{socket.fd(), POLLIN, 0};
      ::poll(&p, 1, 50);
      continue;
    }
    if (sizes) sizes->push_back(part.size());
    for (auto& d : part)
      got.emplace_back(d, std::string(reinterpret_cast<const char*>(d.data.data()), d.data.size()));
  }
  return got;
}

TEST(ReceiveBatch, BurstFromManyPeersComesOutWholeAcrossBatches) {
  std::string error;
  auto socket = UdpSocket::open(kLoopback, &error);
  ASSERT_NE(socket, nullptr) << error;
  const Address to = socket->bound_address();
  ReceiveBatch batch;
  std::vector<std::unique_ptr<Client>> clients;
  for (int c = 0; c < 7; ++c) clients.push_back(std::make_unique<Client>());

  // Rounds of different sizes: a full burst (several full batches and a short one), then one
  // datagram, then a burst again, so short calls follow full ones and the other way round.
  const std::size_t rounds[] = {100, 1, 45, 2, ReceiveBatch::slots, 3};
  std::size_t sequence = 0;
  std::vector<std::size_t> sizes;
  for (std::size_t round : rounds) {
    std::map<std::pair<std::uint16_t, std::string>, int> sent;  // (client port, bytes) -> count
    for (std::size_t i = 0; i < round; ++i, ++sequence) {
      const std::size_t c = sequence % clients.size();
      auto p = payload(c, sequence);
      clients[c]->send_to(to, p);
      ++sent[{clients[c]->port, p}];
    }
    auto got = drain(batch, *socket, round, &sizes);
    ASSERT_EQ(got.size(), round) << "round of " << round;
    for (auto& [d, bytes] : got) {
      EXPECT_FALSE(d.truncated);
      EXPECT_EQ(d.peer.to_string().rfind("127.0.0.1:", 0), 0u) << d.peer.to_string();
      EXPECT_EQ(d.local.to_string(), to.to_string());
      EXPECT_GT(d.ifindex, 0);  // from IP_PKTINFO
      auto it = sent.find({d.peer.port(), bytes});
      ASSERT_NE(it, sent.end()) << "unexpected datagram from " << d.peer.to_string() << " of " << bytes.size() << " bytes";
      if (--it->second == 0) sent.erase(it);
    }
    EXPECT_TRUE(sent.empty());
    EXPECT_TRUE(batch.receive(*socket).empty());  // nothing left, nothing twice
  }
  // The bursts really came in several batches, full and short ones.
  EXPECT_NE(std::find(sizes.begin(), sizes.end(), ReceiveBatch::slots), sizes.end());
  EXPECT_NE(std::find_if(sizes.begin(), sizes.end(), [](auto n) { return n < ReceiveBatch::slots; }), sizes.end());
}

TEST(ReceiveBatch, TruncatedDatagramIsFlaggedAndTheNextIsWhole) {
  std::string error;
  auto socket = UdpSocket::open(kLoopback, &error);
  ASSERT_NE(socket, nullptr) << error;
  ReceiveBatch batch;
  Client client;
  client.send_to(socket->bound_address(), std::string(ReceiveBatch::slot_bytes + 100, 'x'));
  client.send_to(socket->bound_address(), "small");
  auto got = drain(batch, *socket, 2, nullptr);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].first.truncated);
  EXPECT_EQ(got[0].second.size(), ReceiveBatch::slot_bytes);
  EXPECT_FALSE(got[1].first.truncated);
  EXPECT_EQ(got[1].second, "small");
  // A slot that held a truncated datagram takes a normal one afterwards.
  client.send_to(socket->bound_address(), "again");
  got = drain(batch, *socket, 1, nullptr);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].first.truncated);
  EXPECT_EQ(got[0].second, "again");
}

TEST(SendBatch, MoreThanOneBatchReachesEveryPeerInOrder) {
  std::string error;
  auto socket = UdpSocket::open(kLoopback, &error);
  ASSERT_NE(socket, nullptr) << error;
  std::vector<std::unique_ptr<Client>> peers;
  for (int c = 0; c < 3; ++c) peers.push_back(std::make_unique<Client>());
  SendBatch out;
  const std::size_t total = SendBatch::max_batch * 2 + 5;  // two automatic flushes and a last one
  for (std::size_t i = 0; i < total; ++i) {
    auto p = payload(i % peers.size(), i);
    out.add(*socket, Address::v4({127, 0, 0, 1}, peers[i % peers.size()]->port), Address{},
            std::as_bytes(std::span(p.data(), p.size())));
  }
  out.flush();
  EXPECT_EQ(out.pending(), 0u);
  EXPECT_EQ(out.sent(), total);
  EXPECT_EQ(out.dropped(), 0u);
  for (std::size_t i = 0; i < total; ++i)
    EXPECT_EQ(peers[i % peers.size()]->receive(2000), payload(i % peers.size(), i)) << "datagram " << i;
}

}  // namespace
}  // namespace coapgw::net
