// Byte form of SessionState, version 4 (all integers big-endian):
//   "CGDS" version(1)
//   family(1: 4|6) ip(4|16) port(2) scope_id(4)
//   identity(len 2 + bytes) psk_key(len 2 + bytes) psk_hint(len 2 + bytes)
//   cipher_suite(2)
//   client_write_key server_write_key client_write_iv server_write_iv (len 1 + bytes each)
//   read_epoch(2) write_epoch(2) write_sequence(8)
//   replay_any(1) replay_max(8) replay_bits(8)
//   peer_cert_count(1) then each certificate (len 2 + DER)     -- version 2 and later
//   local_cid(len 1 + bytes) peer_cid(len 1 + bytes)           -- version 3
//   registry_keyed(1: 0|1)                                     -- version 4
#include "dtls/session_state.hpp"

#include <array>
#include <cstring>

#include "common/bytes.hpp"
#include "dtls/credentials.hpp"
#include "dtls/record_crypto.hpp"

namespace coapgw::dtls {
namespace {

constexpr std::array<std::byte, 4> magic = {std::byte{'C'}, std::byte{'G'}, std::byte{'D'}, std::byte{'S'}};
constexpr std::uint64_t max_sequence = 0xffffffffffffULL;

class Writer {
 public:
  void u(std::uint64_t value, int count) {
    bytes::append_be(out_, value, static_cast<std::size_t>(count));
  }
  // resize + memcpy, not insert: GCC 12 misreads insert into a vector with a custom allocator
  // (-Wstringop-overflow false positive).
  void raw(const void* data, std::size_t size) {
    if (size == 0) return;
    const auto at = out_.size();
    out_.resize(at + size);
    std::memcpy(out_.data() + at, data, size);
  }
  void blob(const void* data, std::size_t size, int length_bytes) {
    u(size, length_bytes);
    raw(data, size);
  }
  SecretBytes take() { return std::move(out_); }

 private:
  SecretBytes out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  bool u(std::uint64_t* value, int count) {
    if (in_.size() - pos_ < static_cast<std::size_t>(count)) return false;
    *value = bytes::load_be(in_.data() + pos_, static_cast<std::size_t>(count));
    pos_ += static_cast<std::size_t>(count);
    return true;
  }
  bool raw(void* out, std::size_t size) {
    if (in_.size() - pos_ < size) return false;
    if (size > 0) std::memcpy(out, in_.data() + pos_, size);
    pos_ += size;
    return true;
  }
  template <typename Container>
  bool blob(Container* out, int length_bytes, std::size_t max) {
    std::uint64_t size = 0;
    if (!u(&size, length_bytes) || size > max || in_.size() - pos_ < size) return false;
    out->resize(size);
    return raw(out->data(), size);
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
};

bool sizes_match(const SessionState& s) {
  const auto* suite = detail::find_suite(s.cipher_suite);
  return suite != nullptr && s.client_write_key.size() == suite->key_size &&
         s.server_write_key.size() == suite->key_size && s.client_write_iv.size() == suite->fixed_iv_size &&
         s.server_write_iv.size() == suite->fixed_iv_size;
}

}  // namespace

SecretBytes serialize(const SessionState& s) {
  if (s.identity.size() > max_state_identity_size || s.psk_key.size() > max_state_psk_size ||
      s.psk_hint.size() > max_state_hint_size || !sizes_match(s) || s.write_sequence > max_sequence ||
      (s.peer.family() != Address::Family::v4 && s.peer.family() != Address::Family::v6) ||
      s.peer_certs.size() > max_peer_certs || s.local_cid.size() > wire::max_cid_size ||
      s.peer_cid.size() > wire::max_cid_size) {
    return {};
  }
  for (const auto& cert : s.peer_certs) {
    if (cert.empty() || cert.size() > max_peer_cert_size) return {};
  }
  Writer w;
  w.raw(magic.data(), magic.size());
  w.u(session_state_format_version, 1);
  w.u(static_cast<std::uint8_t>(s.peer.family()), 1);
  w.raw(s.peer.ip_bytes(), s.peer.ip_size());
  w.u(s.peer.port(), 2);
  w.u(s.peer.scope_id(), 4);
  w.blob(s.identity.data(), s.identity.size(), 2);
  w.blob(s.psk_key.data(), s.psk_key.size(), 2);
  w.blob(s.psk_hint.data(), s.psk_hint.size(), 2);
  w.u(s.cipher_suite, 2);
  for (const auto* v : {&s.client_write_key, &s.server_write_key, &s.client_write_iv, &s.server_write_iv}) {
    w.blob(v->data(), v->size(), 1);
  }
  w.u(s.read_epoch, 2);
  w.u(s.write_epoch, 2);
  w.u(s.write_sequence, 8);
  w.u(s.replay_any ? 1 : 0, 1);
  w.u(s.replay_max, 8);
  w.u(s.replay_bits, 8);
  w.u(s.peer_certs.size(), 1);
  for (const auto& cert : s.peer_certs) w.blob(cert.data(), cert.size(), 2);
  w.blob(s.local_cid.data(), s.local_cid.size(), 1);
  w.blob(s.peer_cid.data(), s.peer_cid.size(), 1);
  w.u(s.registry_keyed ? 1 : 0, 1);
  return w.take();
}

std::optional<SessionState> deserialize(std::span<const std::byte> bytes) {
  Reader r(bytes);
  std::array<std::byte, 4> head{};
  std::uint64_t version = 0, family = 0, port = 0, scope = 0, suite = 0, read_epoch = 0, write_epoch = 0,
                sequence = 0, any = 0, max = 0, bits = 0;
  if (!r.raw(head.data(), head.size()) || head != magic || !r.u(&version, 1) || version < 1 ||
      version > session_state_format_version || !r.u(&family, 1)) {
    return std::nullopt;
  }
  SessionState s;
  if (family == 4) {
    std::array<std::uint8_t, 4> ip{};
    if (!r.raw(ip.data(), ip.size()) || !r.u(&port, 2) || !r.u(&scope, 4) || scope != 0) return std::nullopt;
    s.peer = Address::v4(ip, static_cast<std::uint16_t>(port));
  } else if (family == 6) {
    std::array<std::uint8_t, 16> ip{};
    if (!r.raw(ip.data(), ip.size()) || !r.u(&port, 2) || !r.u(&scope, 4)) return std::nullopt;
    s.peer = Address::v6(ip, static_cast<std::uint16_t>(port), static_cast<std::uint32_t>(scope));
  } else {
    return std::nullopt;
  }
  if (!r.blob(&s.identity, 2, max_state_identity_size) || !r.blob(&s.psk_key, 2, max_state_psk_size) ||
      !r.blob(&s.psk_hint, 2, max_state_hint_size) || !r.u(&suite, 2)) {
    return std::nullopt;
  }
  s.cipher_suite = static_cast<std::uint16_t>(suite);
  for (auto* v : {&s.client_write_key, &s.server_write_key, &s.client_write_iv, &s.server_write_iv}) {
    if (!r.blob(v, 1, detail::max_key_size)) return std::nullopt;
  }
  if (!r.u(&read_epoch, 2) || !r.u(&write_epoch, 2) || !r.u(&sequence, 8) || !r.u(&any, 1) || !r.u(&max, 8) ||
      !r.u(&bits, 8)) {
    return std::nullopt;
  }
  if (version >= 2) {
    std::uint64_t count = 0;
    if (!r.u(&count, 1) || count > max_peer_certs) return std::nullopt;
    s.peer_certs.resize(count);
    for (auto& cert : s.peer_certs) {
      if (!r.blob(&cert, 2, max_peer_cert_size) || cert.empty()) return std::nullopt;
    }
  }
  if (version >= 3 && (!r.blob(&s.local_cid, 1, wire::max_cid_size) || !r.blob(&s.peer_cid, 1, wire::max_cid_size))) {
    return std::nullopt;
  }
  if (version >= 4) {
    std::uint64_t registry_keyed = 0;
    if (!r.u(&registry_keyed, 1) || registry_keyed > 1) return std::nullopt;
    s.registry_keyed = registry_keyed == 1;
  }
  if (!r.done()) return std::nullopt;
  if (!sizes_match(s) || read_epoch == 0 || write_epoch == 0 || sequence > max_sequence || max > max_sequence ||
      any > 1) {
    return std::nullopt;
  }
  s.read_epoch = static_cast<std::uint16_t>(read_epoch);
  s.write_epoch = static_cast<std::uint16_t>(write_epoch);
  s.write_sequence = sequence;
  s.replay_any = any == 1;
  s.replay_max = max;
  s.replay_bits = bits;
  return s;
}

}  // namespace coapgw::dtls
