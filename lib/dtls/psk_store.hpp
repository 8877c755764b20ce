// coapgw::dtls::PskStore — immutable PSK identity -> key map.
//
// Built once at config load (or reload) and then shared read-only by every
// worker as std::shared_ptr<const PskStore>; a reload swaps the whole store, so
// lookups never lock. Lookups take a string_view and allocate nothing. The keys
// live in compact KeyTables (one arena each, wiped when the table goes): the
// keys_file table is shared with the config it was loaded for (a million keys
// are held once), the inline dtls.psk.keys and add() go to a small own table.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/key_table.hpp"
#include "common/secret.hpp"

namespace coapgw::dtls {

class PskStore {
 public:
  PskStore() = default;
  // `file_keys` (may be null): a table loaded elsewhere, looked up beside the own entries. Its
  // identities must not be add()ed here too (config validation refuses that).
  explicit PskStore(std::shared_ptr<const KeyTable> file_keys) : file_(std::move(file_keys)) {}

  // A later add() for the same identity replaces the key.
  void add(std::string_view identity, const SecretString& key) { own_.assign(identity, key); }
  void reserve(std::size_t count) { own_.reserve(count); }
  // The key, or nullopt when the identity is unknown; valid while the store lives.
  std::optional<std::string_view> find(std::string_view identity) const;
  std::size_t size() const { return own_.size() + (file_ ? file_->size() : 0); }
  bool empty() const { return size() == 0; }

 private:
  KeyTable own_;
  std::shared_ptr<const KeyTable> file_;
};

}  // namespace coapgw::dtls
