#include "dtls/psk_store.hpp"

namespace coapgw::dtls {

void PskStore::add(std::string identity, SecretString key) {
  keys_.insert_or_assign(std::move(identity), std::move(key));
}

const std::string* PskStore::find(std::string_view identity) const {
  auto it = keys_.find(identity);
  return it == keys_.end() ? nullptr : &it->second;
}

}  // namespace coapgw::dtls
