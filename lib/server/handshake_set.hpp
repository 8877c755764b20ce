// coapgw::server::HandshakeSet — a worker's DTLS handshakes in progress, counted per peer IP.
//
// The sessions in handshake (each holds a reference: never idle, never reclaimed) and, beside
// them, how many each IP address has, so that one address cannot hold every handshake slot of
// the worker (dtls.max_handshakes_per_ip). The address of a session does not change while it is
// in handshake, so the count is taken from it on insert and on erase.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <unordered_set>

#include "common/address.hpp"
#include "session/session.hpp"

namespace coapgw::server {

class HandshakeSet {
 public:
  static Address ip_of(const Address& peer) {
    Address ip = peer;
    ip.set_port(0);
    return ip;
  }

  void insert(session::Session* s) {
    if (set_.insert(s).second) ++per_ip_[ip_of(s->addr_remote())];
  }
  std::size_t erase(session::Session* s) {
    if (set_.erase(s) == 0) return 0;
    auto it = per_ip_.find(ip_of(s->addr_remote()));
    if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
    return 1;
  }
  std::size_t count(session::Session* s) const { return set_.count(s); }
  std::size_t size() const { return set_.size(); }
  bool empty() const { return set_.empty(); }
  void clear() {
    set_.clear();
    per_ip_.clear();
  }
  std::uint32_t of_ip(const Address& peer) const {
    auto it = per_ip_.find(ip_of(peer));
    return it == per_ip_.end() ? 0 : it->second;
  }
  auto begin() const { return set_.begin(); }
  auto end() const { return set_.end(); }

 private:
  std::unordered_set<session::Session*> set_;
  std::unordered_map<Address, std::uint32_t, AddressHash> per_ip_;
};

}  // namespace coapgw::server
