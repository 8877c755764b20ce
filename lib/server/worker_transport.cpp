// The worker as the DTLS transport's Host (dtls_transport.hpp): whole CoAP messages up to the
// server role, datagrams out through the send batch (send_to: the role's messages, by transport), the live-session ping, and the hand-off of
// Connection ID records to the worker that issued the CID (a posted message, bounded).
#include "coap/message.hpp"
#include "net/udp_socket.hpp"
#include "server/worker_internal.hpp"

namespace coapgw::server {

void Worker::deliver(session::Session& s, std::span<const std::byte> message, session::TimePoint now) {
  coap::MessageView view;
  auto err = coap::parse(message, view);
  if (err != coap::ParseError::ok) {
    role_->on_malformed(s, message, err);
    return;
  }
  role_->on_coap(s, view, now);
}

void Worker::send_datagram(std::uint8_t endpoint, const Address& peer, const Address& local,
                           std::span<const std::byte> datagram) {
  send_batch_->add(*endpoints_[endpoint]->socket, peer, local, datagram);
}

void Worker::ping(session::Session& s) { role_->layer().send_empty(s, coap::Type::con, s.next_message_id()); }

void Worker::send_to(session::Session& s, std::span<const std::byte> datagram) {
  ++local_.messages_out[datagram.empty() ? 0 : (std::to_integer<int>(datagram[0]) >> 4) & 0x3];
  Endpoint& ep = *endpoints_[s.endpoint()];
  if (s.proto() == session::Proto::udp) {
    send_batch_->add(*ep.socket, s.addr_remote(), s.addr_local(), datagram);
    return;
  }
  if (dtls_->send(s, datagram)) {
    // The engine ended the session (write sequence exhausted). Closed outside the caller's frame,
    // which may still use the session; found again by key and id because it may be gone by then.
    post([this, key = s.key(), id = s.id()] {
      if (auto* again = table_->find(key); again != nullptr && again->id() == id)
        table_->close(*again, session::CloseReason::disconnected);
    });
  }
}

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
