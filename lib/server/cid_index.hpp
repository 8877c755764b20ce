// coapgw::server::CidIndex — one worker's RFC 9146 Connection IDs: which live DTLS session each
// CID we issued belongs to, and the issuing of new ones.
//
// A CID is node_id (dtls.connection_id.node_id), the worker's index (so that a record the kernel
// hands to another worker, after the device's address changed, can be posted to its owner without
// any shared table), then random bytes, retried until no live session of this worker holds it.
// Workers with an index above 255 issue none (their sessions go without a CID). Pure: the random
// source is passed in; the index holds session pointers that the worker removes when a session
// closes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>

namespace coapgw::session {
class Session;
}

namespace coapgw::server {

class CidIndex {
 public:
  using Random = std::function<bool(std::span<std::byte>)>;
  static constexpr std::size_t min_length = 3;  // node_id, worker, at least one random byte
  static constexpr int max_tries = 16;

  CidIndex(std::uint8_t node_id, int worker, Random random)
      : node_id_(node_id), worker_(worker), random_(std::move(random)) {}

  // Fills `cid` (min_length bytes or more) with a CID no session of this worker holds; false when
  // none was found (a worker above 255, a failing random source, or max_tries collisions).
  bool issue(std::span<std::byte> cid) const {
    if (cid.size() < min_length || worker_ < 0 || worker_ > 255) return false;
    for (int attempt = 0; attempt < max_tries; ++attempt) {
      cid[0] = std::byte{node_id_};
      cid[1] = static_cast<std::byte>(worker_);
      if (!random_(cid.subspan(2))) return false;
      if (by_cid_.count(key(cid)) == 0) return true;
    }
    return false;
  }
  // The worker a CID of `length` bytes at the start of `cid` names; nullopt if too short.
  static std::optional<int> worker_of(std::span<const std::byte> cid) {
    if (cid.size() < min_length) return std::nullopt;
    return std::to_integer<int>(cid[1]);
  }

  session::Session* find(std::span<const std::byte> cid) const {
    auto it = by_cid_.find(key(cid));
    return it == by_cid_.end() ? nullptr : it->second;
  }
  // False when another session holds `cid`.
  bool insert(std::span<const std::byte> cid, session::Session* s) {
    auto [it, added] = by_cid_.emplace(key(cid), s);
    return added || it->second == s;
  }
  void erase(std::span<const std::byte> cid, const session::Session* s) {
    auto it = by_cid_.find(key(cid));
    if (it != by_cid_.end() && it->second == s) by_cid_.erase(it);
  }
  std::size_t size() const { return by_cid_.size(); }

 private:
  static std::string key(std::span<const std::byte> cid) {
    return {reinterpret_cast<const char*>(cid.data()), cid.size()};
  }
  std::uint8_t node_id_;
  int worker_;
  Random random_;
  std::unordered_map<std::string, session::Session*> by_cid_;
};

}  // namespace coapgw::server
