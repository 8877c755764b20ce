// coapgw::dtls::filter_client_flight — which records of a datagram from a peer in handshake may
// reach OpenSSL.
//
// Before the peer's Finished authenticates, every record is unauthenticated: anyone who knows
// the device's address and port can inject one, and OpenSSL ends a handshake on the first record
// it cannot use. This filter drops what a client can never legitimately send at that point, so
// that junk cannot end a handshake (issue 11): plaintext alerts, epoch-0 application data,
// records of unknown types or later epochs, ChangeCipherSpec records with another body, and
// handshake records that do not hold well-formed handshake message fragments of the kinds a
// client sends (ClientHello again, Certificate, ClientKeyExchange, CertificateVerify).
// Epoch-1 records (the encrypted Finished) pass: only the keys can tell; so do epoch-1 tls12_cid
// records when the server issued a CID of `cid_length` bytes (RFC 9146), and only then. A forged but well-formed
// message can still end a handshake; DTLS 1.2 offers nothing against that before Finished.
// Pure: no OpenSSL, no state.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace coapgw::dtls {

struct FilteredFlight {
  bool changed = false;          // some record was dropped: use `kept`
  std::vector<std::byte> kept;   // the records that pass, in order (only when changed)
  std::size_t dropped = 0;       // records dropped (a truncated tail counts as one)
  bool finished_after_ccs = false;  // an epoch-1 handshake record followed a ChangeCipherSpec here
};

FilteredFlight filter_client_flight(std::span<const std::byte> datagram, std::size_t cid_length = 0);

}  // namespace coapgw::dtls
