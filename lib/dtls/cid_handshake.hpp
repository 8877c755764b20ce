// coapgw::dtls::detail::CidHandshake — the RFC 9146 Connection ID part of a handshake driven by
// OpenSSL: what the connection_id extension negotiated, and the translation of protected records
// between the tls12_cid format on the wire and the plain DTLS 1.2 format OpenSSL reads and writes.
//
// Why translate rather than run the handshake ourselves: OpenSSL 3.0 knows nothing of CIDs, yet
// RFC 9146 puts the CID format on every record protected with the new keys, the Finished
// included. OpenSSL still does everything that needs judgement (cipher choice, PSK and
// certificate checks, the Finished MACs, retransmission); the translation only moves bytes
// between two framings under the same epoch-1 keys, which exist (the master secret) before the
// first epoch-1 record in either direction. Inbound, a tls12_cid record is opened with the CID
// additional data and re-protected as a plain record for OpenSSL; outbound, OpenSSL's plain
// record is opened and re-protected as a tls12_cid record. The re-protected copies reuse the
// record's nonce with other additional data, which would be unsafe on the wire, but they never
// leave the process: only the peer's and our tls12_cid records are ever sent. A translated record
// that fails to authenticate is dropped before OpenSSL, as any forged record is.
// Internal header.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "dtls/record_crypto.hpp"

struct ssl_st;

namespace coapgw::dtls::detail {

struct CidHandshake {
  CidHandshake() = default;
  ~CidHandshake();
  CidHandshake(const CidHandshake&) = delete;
  CidHandshake& operator=(const CidHandshake&) = delete;

  // Server: the client offered the extension; client: we offer it.
  bool offered = false;
  // Server: we answered it in the ServerHello; client: the ServerHello carried it.
  bool negotiated = false;
  std::vector<std::byte> read;       // the CID in the peer's records to us (empty: plain records)
  std::vector<std::byte> write;      // the CID we put in our records (empty: plain records)
  std::vector<std::byte> extension;  // extension_data we send, kept until OpenSSL copied it

  // Set by the engine: where the keys come from and who we are.
  ssl_st* ssl = nullptr;
  RecordCrypto* crypto = nullptr;
  bool server = true;

  bool translates_inbound() const { return negotiated && !read.empty(); }
  bool translates_outbound() const { return negotiated && !write.empty(); }

  // The datagram with every tls12_cid record opened and re-protected as a plain record (other
  // records pass unchanged); records that do not authenticate (or carry another CID) are left
  // out and counted in *dropped. The span points into this object until the next call.
  std::span<const std::byte> inbound(std::span<const std::byte> datagram, std::size_t* dropped);
  // OpenSSL's datagram with every protected record (epoch > 0) re-protected as a tls12_cid
  // record; false when the keys are not there yet or a record does not open.
  bool outbound(std::span<const std::byte> datagram, std::vector<std::byte>* wire);

 private:
  bool ensure_keys();
  const SuiteParams* suite_ = nullptr;
  TrafficKeys read_keys_, write_keys_;
  std::vector<std::byte> buffer_;
};

}  // namespace coapgw::dtls::detail
