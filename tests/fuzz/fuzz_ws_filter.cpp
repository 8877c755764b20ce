// libFuzzer target for the WebSocket side of RFC 8323 §4 (lib/transport/ws_filter).
//
// The input is what a peer sends, cut into pieces whose sizes its first byte picks: after a valid
// upgrade request when the second byte is odd (so the frame parser is reached), as is otherwise.
// Whatever it is, the filter must never hand up a message over its Max-Message-Size, never hold
// more than the bound of buffered bytes, answer the upgrade at most once, and stop at failed or
// closed. Violations abort() so libFuzzer records a crash.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "transport/ws_filter.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  constexpr std::size_t max_message = 1152;
  coapgw::transport::WsFilter ws(max_message);
  std::vector<std::byte> input;
  if (data[1] & 1) {
    constexpr std::string_view upgrade =
        "GET /.well-known/coap HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: coap\r\n\r\n";
    const auto* u = reinterpret_cast<const std::byte*>(upgrade.data());
    input.assign(u, u + upgrade.size());
  }
  const auto* d = reinterpret_cast<const std::byte*>(data + 2);
  input.insert(input.end(), d, d + (size - 2));
  const std::size_t piece = 1 + data[0] % 64;
  std::vector<std::vector<std::byte>> messages;
  std::vector<std::byte> out;
  using Status = coapgw::transport::WsFilter::Status;
  bool ended = false;
  for (std::size_t at = 0; at < input.size(); at += piece) {
    const auto n = std::min(piece, input.size() - at);
    const auto status = ws.on_bytes(std::span(input).subspan(at, n), messages, out);
    if (ended && status != Status::failed && status != Status::closed) std::abort();  // an end is final
    ended = ended || status == Status::failed || status == Status::closed;
  }
  for (const auto& m : messages)
    if (m.size() > max_message) std::abort();
  std::vector<std::byte> reply;
  if (ws.status() == Status::open && !ws.write(std::span(input).first(std::min<std::size_t>(input.size(), 100)), reply))
    std::abort();
  return 0;
}
