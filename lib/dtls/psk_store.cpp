#include "dtls/psk_store.hpp"

namespace coapgw::dtls {

std::optional<std::string_view> PskStore::find(std::string_view identity) const {
  if (auto key = own_.find(identity)) return key;
  return file_ ? file_->find(identity) : std::nullopt;
}

}  // namespace coapgw::dtls
