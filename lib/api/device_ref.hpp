// coapgw::api::DeviceRef — how a backend names a device in the API path
// (/v1/devices/{identity}/...): the authenticated DTLS identity (PSK identity
// or certificate CN) as it is, or, for plain CoAP devices that have no
// identity, "coap:<ip>:<port>" / "coap:[v6]:<port>". Pure parsing, no I/O.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/address.hpp"

namespace coapgw::api {

// The longest identity accepted (OpenSSL refuses PSK identities above 256 bytes).
inline constexpr std::size_t max_identity_bytes = 256;

struct DeviceRef {
  enum class Kind { identity, plain };
  Kind kind = Kind::identity;
  std::string identity;  // Kind::identity: the decoded identity
  Address remote;        // Kind::plain: the device's address

  // One text per device, used as the queue key and in answers: the identity,
  // or "coap:" + remote.to_string().
  std::string key() const;
  friend bool operator==(const DeviceRef& a, const DeviceRef& b) {
    return a.kind == b.kind && a.identity == b.identity && a.remote == b.remote;
  }
};

struct DeviceRefResult {
  std::optional<DeviceRef> device;
  std::string error;  // set when device is empty
};

// Parses one percent-encoded path segment. Refused: empty, longer than
// max_identity_bytes once decoded, control characters; a "coap:" prefix
// whose rest is not "ip:port" with a unicast address and a port 1..65535.
DeviceRefResult parse_device_ref(std::string_view encoded_segment);

}  // namespace coapgw::api
