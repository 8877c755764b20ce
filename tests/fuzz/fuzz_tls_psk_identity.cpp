// libFuzzer target for the TLS PSK identity reader of coaps+tcp (lib/transport/tls_psk_identity).
//
// The input is what a client sends, cut into pieces whose size its first byte picks. Whatever it
// is, the reader must stop at found or none for good, never take an empty identity or one over
// max_identity, and find the same identity however the bytes are cut (fed whole as well). Violations
// abort() so libFuzzer records a crash.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "transport/tls_psk_identity.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  using coapgw::transport::TlsPskIdentity;
  const auto input = std::as_bytes(std::span(data + 1, size - 1));
  const std::size_t piece = 1 + data[0] % 64;
  TlsPskIdentity cut;
  bool ended = false;
  for (std::size_t at = 0; at < input.size(); at += piece) {
    const auto state = cut.feed(input.subspan(at, std::min(piece, input.size() - at)));
    if (ended && state == TlsPskIdentity::State::reading) std::abort();  // an end is final
    ended = state != TlsPskIdentity::State::reading;
  }
  if (cut.state() == TlsPskIdentity::State::found &&
      (cut.identity().empty() || cut.identity().size() > TlsPskIdentity::max_identity))
    std::abort();
  TlsPskIdentity whole;
  whole.feed(input);
  if (whole.state() != cut.state() || whole.identity() != cut.identity()) std::abort();
  return 0;
}
