#include "dtls/wire.hpp"

#include "common/bytes.hpp"

namespace coapgw::dtls {
namespace wire {
namespace {

std::uint64_t read_be(std::span<const std::byte> bytes, std::size_t offset, std::size_t count) {
  return bytes::load_be(bytes.data() + offset, count);
}

bool is_dtls_version(std::uint16_t version) {
  // DTLS versions are 0xFEXX (1.0 = FEFF, 1.2 = FEFD).
  return (version >> 8) == 0xFE;
}

bool known_content_type(std::uint8_t type) { return type >= 20 && type <= 25; }

}  // namespace

std::optional<Record> next_record(std::span<const std::byte> datagram,
                                  std::span<const std::byte>* rest, std::size_t cid_length) {
  if (datagram.size() < record_header_size) return std::nullopt;
  Record r;
  r.type = static_cast<std::uint8_t>(read_be(datagram, 0, 1));
  r.version = static_cast<std::uint16_t>(read_be(datagram, 1, 2));
  r.epoch = static_cast<std::uint16_t>(read_be(datagram, 3, 2));
  r.sequence = read_be(datagram, 5, 6);
  // RFC 9146 4: type, version, epoch, sequence, cid, length, then the fragment.
  const std::size_t cid = r.type == static_cast<std::uint8_t>(ContentType::tls12_cid) ? cid_length : 0;
  const std::size_t header = record_header_size + cid;
  if (datagram.size() < header) return std::nullopt;
  r.cid = datagram.subspan(11, cid);
  const std::size_t length = read_be(datagram, 11 + cid, 2);
  if (datagram.size() - header < length) return std::nullopt;
  r.fragment = datagram.subspan(header, length);
  r.whole = datagram.first(header + length);
  if (rest != nullptr) *rest = datagram.subspan(header + length);
  return r;
}

HelloParse parse_client_hello(std::span<const std::byte> datagram, ClientHello* hello) {
  std::span<const std::byte> rest;
  const auto record = next_record(datagram, &rest);
  if (!record || !known_content_type(record->type) || !is_dtls_version(record->version)) {
    return HelloParse::malformed;
  }
  if (record->type != static_cast<std::uint8_t>(ContentType::handshake) || record->epoch != 0) {
    return HelloParse::not_client_hello;
  }
  const auto msg = record->fragment;
  if (msg.size() < handshake_header_size) return HelloParse::malformed;
  if (read_be(msg, 0, 1) != 1) return HelloParse::not_client_hello;
  const std::size_t length = read_be(msg, 1, 3);
  const std::size_t fragment_offset = read_be(msg, 6, 3);
  const std::size_t fragment_length = read_be(msg, 9, 3);
  // A fragmented ClientHello cannot be checked statelessly; real clients keep it in one record.
  if (fragment_offset != 0 || fragment_length != length ||
      msg.size() - handshake_header_size < length) {
    return HelloParse::malformed;
  }
  const auto body = msg.subspan(handshake_header_size, length);
  std::size_t pos = 0;
  // client_version(2) random(32)
  if (body.size() < 2 + 32 + 1) return HelloParse::malformed;
  if (!is_dtls_version(static_cast<std::uint16_t>(read_be(body, 0, 2)))) return HelloParse::malformed;
  pos = 34;
  const std::size_t session_id_len = read_be(body, pos, 1);
  if (session_id_len > 32 || body.size() - pos - 1 < session_id_len) return HelloParse::malformed;
  pos += 1 + session_id_len;
  const std::size_t fixed_end = pos;
  if (body.size() - pos < 1) return HelloParse::malformed;
  const std::size_t cookie_len = read_be(body, pos, 1);
  if (body.size() - pos - 1 < cookie_len) return HelloParse::malformed;
  const auto cookie = body.subspan(pos + 1, cookie_len);
  pos += 1 + cookie_len;
  const std::size_t suites_begin = pos;
  if (body.size() - pos < 2) return HelloParse::malformed;
  const std::size_t suites_len = read_be(body, pos, 2);
  if (suites_len < 2 || suites_len % 2 != 0 || body.size() - pos - 2 < suites_len) {
    return HelloParse::malformed;
  }
  pos += 2 + suites_len;
  if (body.size() - pos < 1) return HelloParse::malformed;
  const std::size_t compression_len = read_be(body, pos, 1);
  if (compression_len < 1 || body.size() - pos - 1 < compression_len) return HelloParse::malformed;
  pos += 1 + compression_len;
  // Extensions, if any, are OpenSSL's to validate once a cookie proved the address.
  if (hello != nullptr) {
    hello->record_sequence = record->sequence;
    hello->message_seq = static_cast<std::uint16_t>(read_be(msg, 4, 2));
    hello->fixed_fields = body.first(fixed_end);
    hello->cookie = cookie;
    hello->suites_and_compression = body.subspan(suites_begin, pos - suites_begin);
  }
  return HelloParse::ok;
}

}  // namespace wire

bool looks_like_client_hello(std::span<const std::byte> datagram) {
  if (datagram.size() < wire::record_header_size + 1) return false;
  const auto type = std::to_integer<std::uint8_t>(datagram[0]);
  const auto epoch_hi = std::to_integer<std::uint8_t>(datagram[3]);
  const auto epoch_lo = std::to_integer<std::uint8_t>(datagram[4]);
  const std::size_t length = bytes::load_be16(datagram.data() + 11);
  return type == 22 && epoch_hi == 0 && epoch_lo == 0 && length >= 1 &&
         std::to_integer<std::uint8_t>(datagram[wire::record_header_size]) == 1;
}

}  // namespace coapgw::dtls
