// The worker as the DTLS transport's Host (dtls_transport.hpp): whole CoAP messages up to the
// message layer, datagrams out through the send batch, the live-session ping, and the hand-off of
// Connection ID records to the worker that issued the CID (a posted message, bounded).
#include "coap/message.hpp"
#include "net/udp_socket.hpp"
#include "server/worker_internal.hpp"

namespace coapgw::server {

void Worker::deliver(session::Session& s, std::span<const std::byte> message, session::TimePoint now) {
  coap::MessageView view;
  auto err = coap::parse(message, view);
  if (err != coap::ParseError::ok) {
    on_malformed_in_session(s, message, err);
    return;
  }
  on_coap(s, view, now);
}

void Worker::send_datagram(std::uint8_t endpoint, const Address& peer, const Address& local,
                           std::span<const std::byte> datagram) {
  send_batch_->add(*endpoints_[endpoint]->socket, peer, local, datagram);
}

void Worker::ping(session::Session& s) { layer_->send_empty(s, coap::Type::con, s.next_message_id()); }

void Worker::set_peers(std::vector<Worker*> peers) { peers_ = std::move(peers); }

bool Worker::hand_to_worker(int worker, std::uint8_t endpoint, const net::ReceivedDatagram& d) {
  if (worker < 0 || static_cast<std::size_t>(worker) >= peers_.size() || peers_[worker] == nullptr) return false;
  Worker* target = peers_[worker];
  // Bounded: the records are not authenticated yet (anyone can forge the worker byte), so a flood
  // must not grow the target's queue without limit. Over the bound they take the ordinary path
  // here and are counted as dtls_no_session.
  if (target->handed_in_.fetch_add(1, std::memory_order_relaxed) >= max_handed_in) {
    target->handed_in_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  target->post([target, endpoint, peer = d.peer, local = d.local, ifindex = d.ifindex,
                data = std::vector<std::byte>(d.data.begin(), d.data.end())] {
    target->handed_in_.fetch_sub(1, std::memory_order_relaxed);
    if (endpoint >= target->endpoints_.size()) return;
    auto& ep = *target->endpoints_[endpoint];
    net::ReceivedDatagram again;
    again.peer = peer;
    again.local = local;
    again.ifindex = ifindex;
    again.data = data;
    target->dtls_->on_handed_datagram({endpoint, ep.socket->bound_address().port(), ep.socket->wildcard()}, again,
                                      session::Clock::now());
    target->send_batch_->flush();
  });
  return true;
}

}  // namespace coapgw::server
