// coapgw::dtls::FailureBackoff — slows down addresses whose DTLS handshakes keep failing.
//
// A device with a wrong or revoked key retries its handshake forever, and each try costs the
// gateway a full handshake. Only handshakes that passed the cookie exchange are counted (failed
// or timed out), so the address is one the peer really answers at. The key is the address with
// its port: devices behind one NAT address are not held back for a neighbour (the per-IP bound
// on handshakes in progress, dtls.max_handshakes_per_ip, covers one host opening many). After
// `after` consecutive failures from one address, further handshakes from it are refused for
// `initial`, doubling with each further failure up to `max`; a success, or `max` without
// failures, forgets the address. The table is bounded (`max_addresses`); when full, the entry
// closest to being forgotten makes room (counted). Pure: time is passed in.
//
// What this cannot tell apart (DTLS 1.2 authenticates nothing before Finished): a handshake that
// failed because someone who knows the device's exact address and port injected a well-formed
// forged handshake message into it. Junk records never get that far (filter_client_flight).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "common/address.hpp"

namespace coapgw::dtls {

class FailureBackoff {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  struct Settings {
    unsigned after = 3;  // 0 disables the back-off
    std::chrono::milliseconds initial{1000};
    std::chrono::milliseconds max{60000};
    std::size_t max_addresses = 10000;
  };

  FailureBackoff() : FailureBackoff(Settings()) {}
  explicit FailureBackoff(Settings settings) : settings_(settings) {}

  // True while handshakes from `peer` (address and port) are held back.
  bool blocked(const Address& peer, time_point now);
  void on_failure(const Address& peer, time_point now);
  void on_success(const Address& peer);

  std::size_t size() const { return entries_.size(); }
  std::uint64_t evicted() const { return evicted_; }
  const Settings& settings() const { return settings_; }

 private:
  struct Entry {
    std::uint32_t failures = 0;
    time_point last_failure{};
    time_point until{};
  };
  bool forgotten(const Entry& e, time_point now) const { return now - e.last_failure >= settings_.max; }
  void make_room(time_point now);

  Settings settings_;
  std::unordered_map<Address, Entry, AddressHash> entries_;
  std::uint64_t evicted_ = 0;
};

}  // namespace coapgw::dtls
