// Parsing of the {identity} path segment; see device_ref.hpp.
#include "api/device_ref.hpp"

#include <algorithm>

#include "common/url.hpp"

namespace coapgw::api {

namespace {
constexpr std::string_view plain_prefix = "coap:";
}

std::string DeviceRef::key() const {
  return kind == Kind::identity ? identity : std::string(plain_prefix) + remote.to_string();
}

DeviceRefResult parse_device_ref(std::string_view encoded_segment) {
  const std::string text = url::percent_decode(encoded_segment);
  if (text.empty()) return {std::nullopt, "empty device identity"};
  if (text.size() > max_identity_bytes)
    return {std::nullopt, "device identity longer than " + std::to_string(max_identity_bytes) + " bytes"};
  const bool control = std::any_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
  if (control) return {std::nullopt, "device identity holds control characters"};
  DeviceRef ref;
  if (text.compare(0, plain_prefix.size(), plain_prefix) != 0) {
    ref.identity = text;
    return {std::move(ref), {}};
  }
  const auto address = Address::parse(std::string_view(text).substr(plain_prefix.size()));
  if (!address || address->port() == 0 || address->is_unspecified() || address->is_multicast())
    return {std::nullopt, "a plain CoAP device is named coap:<ip>:<port> or coap:[<ipv6>]:<port> "
                          "with a unicast address and a port 1-65535"};
  ref.kind = DeviceRef::Kind::plain;
  ref.remote = *address;
  return {std::move(ref), {}};
}

}  // namespace coapgw::api
