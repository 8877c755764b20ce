// coapgw::dtls::PskStore — immutable PSK identity -> key map.
//
// Built once at config load (or reload) and then shared read-only by every
// worker as std::shared_ptr<const PskStore>; a reload swaps the whole store, so
// lookups never lock. Lookups take a string_view and allocate nothing. Keys are
// SecretStrings: wiped when the store (after a reload, its last user) goes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/secret.hpp"

namespace coapgw::dtls {

class PskStore {
 public:
  // A later add() for the same identity replaces the key.
  void add(std::string identity, SecretString key);
  void reserve(std::size_t count) { keys_.reserve(count); }
  // nullptr when the identity is unknown.
  const std::string* find(std::string_view identity) const;
  std::size_t size() const { return keys_.size(); }
  bool empty() const { return keys_.empty(); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, SecretString, Hash, std::equal_to<>> keys_;
};

}  // namespace coapgw::dtls
