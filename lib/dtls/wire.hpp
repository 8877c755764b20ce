// coapgw::dtls wire parsing — DTLS 1.2 record headers (RFC 6347 4.1, and the
// RFC 9146 tls12_cid header that carries a Connection ID) and the ClientHello
// fields the cookie exchange needs (RFC 6347 4.2.1). Pure functions over
// bytes, bounds-checked, no allocation; fuzzed by fuzz_dtls_record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace coapgw::dtls {

// First record is a handshake record (content type 22) with epoch 0 whose first
// message is a ClientHello (type 1). The worker's cheap pre-check.
bool looks_like_client_hello(std::span<const std::byte> datagram);

namespace wire {

inline constexpr std::size_t record_header_size = 13;
inline constexpr std::size_t handshake_header_size = 12;

enum class ContentType : std::uint8_t {
  change_cipher_spec = 20,
  alert = 21,
  handshake = 22,
  application_data = 23,
  tls12_cid = 25,  // RFC 9146: a protected record with a Connection ID in its header
};

// RFC 9146 3: the connection_id extension, and the largest CID its one-byte length allows.
inline constexpr std::uint16_t connection_id_extension = 54;
inline constexpr std::size_t max_cid_size = 255;

struct Record {
  std::uint8_t type = 0;
  std::uint16_t version = 0;
  std::uint16_t epoch = 0;
  std::uint64_t sequence = 0;  // 48 bits
  std::span<const std::byte> cid;  // tls12_cid records only: the Connection ID between sequence and length
  std::span<const std::byte> fragment;
  std::span<const std::byte> whole;  // header + fragment
};

// Splits off the first record of `datagram`; nullopt when the header is
// truncated or claims more bytes than remain. `rest` gets what follows it.
// The CID length is not on the wire (RFC 9146 4): a tls12_cid record is read
// with `cid_length` CID bytes, the length of the CID the receiver issued; with
// 0 it is read as a plain header (and then fails to authenticate).
std::optional<Record> next_record(std::span<const std::byte> datagram,
                                  std::span<const std::byte>* rest, std::size_t cid_length = 0);

// The parts of an unfragmented ClientHello that the cookie binds to.
struct ClientHello {
  std::uint64_t record_sequence = 0;
  std::uint16_t message_seq = 0;
  std::span<const std::byte> fixed_fields;  // client_version .. session_id (inclusive)
  std::span<const std::byte> cookie;
  std::span<const std::byte> suites_and_compression;  // cipher_suites + compression_methods with lengths
};

enum class HelloParse : std::uint8_t { ok, not_client_hello, malformed };

// Parses the first record of a datagram as a ClientHello.
HelloParse parse_client_hello(std::span<const std::byte> datagram, ClientHello* hello);

}  // namespace wire
}  // namespace coapgw::dtls
