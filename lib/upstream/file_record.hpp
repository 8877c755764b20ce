// The file sink's line format (DESIGN "file sink"): one JSON object per
// forwarded request. Pure formatting helpers, kept apart from the file I/O so
// the format is testable byte for byte.
//
// Choices: an empty identity (plain CoAP) is written as "" so the field is
// always a string; an absent Content-Format is written as null; the payload is
// "payload" (JSON-escaped text) when it is valid UTF-8, else "payload_b64"
// (RFC 4648 base64 with padding). An empty payload is "payload":"".
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "upstream/forward.hpp"

namespace coapgw::upstream {

std::string base64_encode(std::span<const std::byte> bytes);
// "2024-05-06T07:08:09.123Z"
std::string rfc3339_utc_ms(std::chrono::system_clock::time_point t);
// The whole line including the trailing '\n'.
std::string format_file_record(const ForwardRequest& request,
                               std::chrono::system_clock::time_point now);

}  // namespace coapgw::upstream
