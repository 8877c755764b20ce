#include "dtls/cid_handshake.hpp"

#include <openssl/crypto.h>

#include "dtls/ssl_glue.hpp"
#include "dtls/wire.hpp"

namespace coapgw::dtls::detail {

CidHandshake::~CidHandshake() {
  OPENSSL_cleanse(&read_keys_, sizeof read_keys_);
  OPENSSL_cleanse(&write_keys_, sizeof write_keys_);
}

bool CidHandshake::ensure_keys() {
  if (suite_ != nullptr) return true;
  if (ssl == nullptr || crypto == nullptr) return false;
  return export_traffic_keys(ssl, server, &suite_, &read_keys_, &write_keys_);
}

std::span<const std::byte> CidHandshake::inbound(std::span<const std::byte> datagram, std::size_t* dropped) {
  buffer_.clear();
  std::span<const std::byte> rest = datagram;
  while (!rest.empty()) {
    const auto record = wire::next_record(rest, &rest, read.size());
    if (!record) {
      ++*dropped;
      break;
    }
    if (record->type != static_cast<std::uint8_t>(wire::ContentType::tls12_cid)) {
      buffer_.insert(buffer_.end(), record->whole.begin(), record->whole.end());
      continue;
    }
    const auto scratch = crypto->scratch();
    const bool cid_ok = std::equal(record->cid.begin(), record->cid.end(), read.begin(), read.end());
    const auto opened = cid_ok && ensure_keys() ? crypto->open_record(*suite_, read_keys_, *record, scratch)
                                                : std::nullopt;
    if (!opened || !crypto->seal_record(*suite_, read_keys_, opened->type, record->epoch, record->sequence,
                                        scratch.first(opened->length), &buffer_)) {
      ++*dropped;
    }
    if (opened) OPENSSL_cleanse(scratch.data(), opened->length);
  }
  return buffer_;
}

bool CidHandshake::outbound(std::span<const std::byte> datagram, std::vector<std::byte>* wire) {
  std::span<const std::byte> rest = datagram;
  while (!rest.empty()) {
    const auto record = wire::next_record(rest, &rest);
    if (!record) return false;
    if (record->epoch == 0) {
      wire->insert(wire->end(), record->whole.begin(), record->whole.end());
      continue;
    }
    if (!ensure_keys()) return false;
    const auto scratch = crypto->scratch();
    const auto opened = crypto->open_record(*suite_, write_keys_, *record, scratch);
    const bool sealed = opened && crypto->seal_record(*suite_, write_keys_, opened->type, record->epoch,
                                                      record->sequence, scratch.first(opened->length), wire, write);
    if (opened) OPENSSL_cleanse(scratch.data(), opened->length);
    if (!sealed) return false;
  }
  return true;
}

}  // namespace coapgw::dtls::detail
