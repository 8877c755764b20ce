// coapgw::dtls::detail::DatagramPipe — the state behind an SSL object's BIO.
//
// The engine does no I/O: before each OpenSSL call it points `in` at the
// datagram (or single record) to read and `out` at the caller's Output; the
// BIO hands OpenSSL `in` as one packet and turns each write into one datagram.
// Plain data so that Engine can hold it inline without OpenSSL headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace coapgw::dtls {
struct Output;
namespace detail {
struct CidHandshake;

struct DatagramPipe {
  std::span<const std::byte> in;
  bool in_consumed = true;
  Output* out = nullptr;
  std::uint8_t mtu_overhead = 28;  // IPv4 20 + UDP 8; IPv6 48
  // Highest epoch-0 record sequence we wrote, so we can add a plaintext alert
  // that the peer does not drop as a replay.
  std::uint64_t last_epoch0_sequence = 0;
  bool wrote_epoch0 = false;
  // Highest epoch-1 record sequence the SSL object wrote (sent or not): the
  // lean record layer continues after it, so no record number (nonce) repeats.
  std::uint64_t last_epoch1_sequence = 0;
  bool wrote_epoch1 = false;
  // Set when a Connection ID was negotiated for our records: OpenSSL's protected records are
  // rewritten in the tls12_cid format on their way out.
  CidHandshake* cid = nullptr;

  void feed(std::span<const std::byte> datagram, Output* output) {
    in = datagram;
    in_consumed = false;
    out = output;
  }
  void detach() {
    in = {};
    in_consumed = true;
    out = nullptr;
  }
};

}  // namespace detail
}  // namespace coapgw::dtls
