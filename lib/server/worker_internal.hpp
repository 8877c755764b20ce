// Worker-private structures shared by the worker's files (worker*.cpp).
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

}  // namespace coapgw::server
