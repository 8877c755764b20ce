// Worker-private structures shared by worker.cpp, message_layer.cpp and blockwise_layer.cpp.
#pragma once

#include <boost/asio/posix/stream_descriptor.hpp>

#include <array>
#include <memory>
#include <vector>

#include "coap/block.hpp"
#include "coap/message.hpp"
#include "dtls/engine.hpp"
#include "net/udp_socket.hpp"
#include "server/dtls_tls.hpp"
#include "server/worker.hpp"
#include "session/session.hpp"

namespace coapgw::server {

using metrics::BadReason;

struct Worker::Endpoint {
  ~Endpoint();
  std::unique_ptr<net::UdpSocket> socket;
  session::Proto proto = session::Proto::udp;
  std::unique_ptr<boost::asio::posix::stream_descriptor> watcher;
};

// Everything needed to answer a request after its datagram is gone (separate responses).
struct Worker::Reply {
  coap::Type request_type = coap::Type::con;
  std::uint16_t message_id = 0;
  std::array<std::byte, coap::max_token_length> token{};
  std::uint8_t token_length = 0;
  std::uint8_t method = 0;
  bool separate = false;                      // the request was already ACKed: answer with our own CON
  std::string answer_key;                     // the request a Block2 answer is kept under (answer_key())
  bool from_cache = false;                    // the body is a kept Block2 answer: do not store it again
  std::optional<coap::BlockValue> block1;     // echoed in the final answer of a Block1 upload
  std::uint32_t block2_num = 0;               // block the client asked for
  std::uint8_t block2_szx = 6;                // largest block size the client accepts
  bool size2_requested = false;
  std::span<const std::byte> token_span() const { return {token.data(), token_length}; }
};

// A request waiting for its upstream answer.
struct Worker::PendingForward {
  session::Session* session;   // referenced while pending
  Reply reply;
  session::TimePoint separate_deadline;
  session::TimePoint started;
  metrics::RouteMetrics metrics;  // the route's children (outlive any reload: the registry keeps them)
  std::shared_ptr<upstream::Router> router;  // keeps a replaced router alive until we answer
};


}  // namespace coapgw::server
