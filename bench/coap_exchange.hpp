// coapgw-bench CoAP exchange — the bytes of one bench request and the reading of its answer.
//
// Built on the project's codec (coap::MessageWriter, coap::parse) so the tool speaks the same
// wire format the gateway is tested against; no I/O here. A request carries a 4-byte token that
// the caller uses to find the request again when the answer arrives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace coapgw::bench {

inline constexpr std::size_t max_datagram = 1500;

// Pre-split Uri-Path so that building a request does not parse the path every time.
struct RequestTemplate {
  std::vector<std::string> path_segments;
  static RequestTemplate from_path(const std::string& path);
};

// CON GET with the given message id and token; returns the size written (0 if it does not fit).
std::size_t build_get(const RequestTemplate& request, std::uint16_t message_id, std::uint32_t token,
                      std::span<std::byte> out);

// Empty ACK for a separate (CON) response.
std::size_t build_empty_ack(std::uint16_t message_id, std::span<std::byte> out);

enum class AnswerKind : std::uint8_t {
  response,           // piggybacked (ACK) or NON response: complete
  separate_response,  // CON response: complete, and needs an empty ACK
  empty_ack,          // request accepted, the response comes later
  reset,              // RST: the request failed
  other,              // not ours, or malformed
};

struct Answer {
  AnswerKind kind = AnswerKind::other;
  std::uint8_t code = 0;
  std::uint16_t message_id = 0;
  std::uint32_t token = 0;  // valid for response kinds with a 4-byte token
};

Answer read_answer(std::span<const std::byte> datagram);

// --serve: the device's answer to a request from the gateway (a downlink): a piggybacked ACK 2.05
// "ok" for a CON, a NON 2.05 "ok" with `message_id` for a NON. 0 when `datagram` is no request.
std::size_t build_device_answer(std::span<const std::byte> datagram, std::uint16_t message_id,
                                std::span<std::byte> out);

}  // namespace coapgw::bench
