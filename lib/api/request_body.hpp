// coapgw::api request bodies — the JSON a backend POSTs, parsed (nlohmann-json:
// these bodies are untrusted input) and validated into the Downlink types.
// Every refusal is a value with a message that names the member, answered 400.
// Pure functions, no I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "api/downlink.hpp"

namespace coapgw::api {

// Documented bounds of the request members.
inline constexpr std::chrono::milliseconds default_timeout{30000};
inline constexpr std::chrono::milliseconds max_timeout{std::chrono::minutes(5)};
inline constexpr std::chrono::milliseconds max_queue_for{std::chrono::hours(24 * 7)};
inline constexpr std::chrono::milliseconds default_wait{2000};
inline constexpr std::chrono::milliseconds max_wait{std::chrono::seconds(60)};
inline constexpr std::size_t max_option_bytes = 255;  // one Uri-Path / Uri-Query option (RFC 7252 §5.10)
inline constexpr std::size_t max_options = 32;        // Uri-Path segments, and Uri-Query parts

template <typename T>
struct Parsed {
  std::optional<T> value;
  std::string error;  // set when value is empty
};

// POST /v1/devices/{identity}/requests
struct DeviceRequestSpec {
  DownlinkRequest request;
  std::chrono::milliseconds timeout = default_timeout;
  std::optional<std::chrono::milliseconds> queue_for;
};
// {method, path, query, content_format, payload | payload_b64, confirmable, timeout, queue_for}
Parsed<DeviceRequestSpec> parse_device_request(std::string_view body);

// POST /v1/devices/{identity}/observations: {path, query, notify, timeout}
struct ObserveSpec {
  ObserveRequest request;
  std::chrono::milliseconds timeout = default_timeout;
};
Parsed<ObserveSpec> parse_observe_request(std::string_view body);

// POST /v1/groups/requests: {group, method, path, query, content_format, payload | payload_b64, wait}
Parsed<GroupRequest> parse_group_request(std::string_view body);

// "GET" for 1 .. "iPATCH" for 7; "" for any other code.
std::string_view method_name(std::uint8_t code);

// RFC 4648 base64 with padding; decode refuses anything else.
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace coapgw::api
