// Fakes shared by the registry tests that drive the real DTLS transport: a Host that records what
// the transport delivers and sends, an HTTP client that queues the registry requests for the test
// to answer, and a registry answer with a JSON body.
#pragma once

#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "net/udp_socket.hpp"
#include "server/dtls_transport.hpp"
#include "upstream/forward.hpp"

namespace coapgw::server::test {

struct NoWorker : session::Context {
  int worker_index() const override { return 0; }
};

struct Host : DtlsTransport::Host {
  std::vector<std::vector<std::byte>> to_device;
  std::vector<std::string> delivered;
  void deliver(session::Session&, std::span<const std::byte> m, session::TimePoint) override {
    delivered.emplace_back(reinterpret_cast<const char*>(m.data()), m.size());
  }
  void send_datagram(std::uint8_t, const Address&, const Address&, std::span<const std::byte> d) override {
    to_device.emplace_back(d.begin(), d.end());
  }
  void ping(session::Session&) override {}
  void count_bad(metrics::BadReason, std::uint64_t) override {}
  bool draining() const override { return false; }
  bool hand_to_worker(int, std::uint8_t, const net::ReceivedDatagram&) override { return false; }
};

struct Client : upstream::Upstream {
  std::deque<std::pair<upstream::ForwardRequest, upstream::ForwardDone>>* calls;
  void forward(upstream::ForwardRequest r, upstream::ForwardDone done) override {
    calls->emplace_back(std::move(r), std::move(done));
  }
};

inline upstream::ForwardResponse json_answer(const std::string& body) {
  upstream::ForwardResponse r;
  r.code = upstream::coap_code(2, 5);
  for (char c : body) r.payload.push_back(static_cast<std::byte>(c));
  return r;
}

}  // namespace coapgw::server::test
