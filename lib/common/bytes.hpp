// coapgw::bytes — the one place that reads and writes big-endian integers and hex text.
//
// Network byte order for the wire codecs (CoAP header and uint options, DTLS records and
// handshake headers, persisted session state) and lower-case hex for names, log escapes and
// ETags. Header-only and constexpr, no I/O, no allocation except where a string is returned.
//
// Hand-written rather than boost/endian or OpenSSL's hex helpers, on purpose:
// - lib/coap must build without Boost or OpenSSL (the fuzz targets compile its sources alone),
//   and these work on std::byte spans without casts. The fixed widths compile to one load or
//   store plus a byte swap (checked with GCC 12 -O2), as boost::endian's do, and stay constexpr.
// - Widths here are often chosen at run time (DTLS length fields of 1..3 bytes, sequence numbers
//   of 6, CoAP uint options of 0..4), which boost/endian's fixed-width functions do not cover.
// - OPENSSL_buf2hexstr writes upper case with ':' separators, and OPENSSL_hexstr2buf accepts
//   ':' between digits, needs a NUL-terminated copy, allocates, and reports failures on the
//   thread's OpenSSL error queue (which the DTLS code reads); the gateway's formats are lower
//   case without separators and must not touch that queue.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace coapgw::bytes {

// Any one-byte type the codebase keeps bytes in: std::byte, unsigned char / std::uint8_t, char.
template <class T>
concept Octet = std::is_same_v<std::remove_cv_t<T>, std::byte> ||
                std::is_same_v<std::remove_cv_t<T>, unsigned char> || std::is_same_v<std::remove_cv_t<T>, char>;

template <Octet T>
constexpr unsigned octet(T b) {
  return static_cast<unsigned>(static_cast<unsigned char>(b));
}

// `count` (0..8) bytes at p, most significant first. More than 8 keeps the low 64 bits.
template <Octet T>
constexpr std::uint64_t load_be(const T* p, std::size_t count) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < count; ++i) v = (v << 8) | octet(p[i]);
  return v;
}
template <Octet T>
constexpr std::uint64_t load_be(std::span<T> b) {
  return load_be(b.data(), b.size());
}

namespace detail {
// N bytes at p as one OR of shifted bytes in U: GCC and Clang compile this to a single load and
// byte swap (a loop accumulating in a wider type they do not recognise).
template <class U, std::size_t N, Octet T>
constexpr U load_be_fixed(const T* p) {
  return [p]<std::size_t... I>(std::index_sequence<I...>) {
    return static_cast<U>(((static_cast<U>(octet(p[I])) << (8 * (N - 1 - I))) | ...));
  }(std::make_index_sequence<N>{});
}
}  // namespace detail

template <Octet T>
constexpr std::uint16_t load_be16(const T* p) { return detail::load_be_fixed<std::uint16_t, 2>(p); }
template <Octet T>
constexpr std::uint32_t load_be24(const T* p) { return detail::load_be_fixed<std::uint32_t, 3>(p); }
template <Octet T>
constexpr std::uint32_t load_be32(const T* p) { return detail::load_be_fixed<std::uint32_t, 4>(p); }
template <Octet T>
constexpr std::uint64_t load_be48(const T* p) { return detail::load_be_fixed<std::uint64_t, 6>(p); }
template <Octet T>
constexpr std::uint64_t load_be64(const T* p) { return detail::load_be_fixed<std::uint64_t, 8>(p); }

// The low `count` (0..8) bytes of v at p, most significant first.
template <Octet T>
constexpr void store_be(T* p, std::uint64_t v, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) p[i] = static_cast<T>((v >> (8 * (count - 1 - i))) & 0xff);
}
template <Octet T>
constexpr void store_be(std::span<T> out, std::uint64_t v) {
  store_be(out.data(), v, out.size());
}

namespace detail {
template <std::size_t N, Octet T, class U>
constexpr void store_be_fixed(T* p, U v) {
  [p, v]<std::size_t... I>(std::index_sequence<I...>) {
    ((p[I] = static_cast<T>(static_cast<unsigned char>(v >> (8 * (N - 1 - I))))), ...);
  }(std::make_index_sequence<N>{});
}
}  // namespace detail

template <Octet T>
constexpr void store_be16(T* p, std::uint16_t v) { detail::store_be_fixed<2>(p, v); }
template <Octet T>
constexpr void store_be24(T* p, std::uint32_t v) { detail::store_be_fixed<3>(p, v); }
template <Octet T>
constexpr void store_be32(T* p, std::uint32_t v) { detail::store_be_fixed<4>(p, v); }
template <Octet T>
constexpr void store_be48(T* p, std::uint64_t v) { detail::store_be_fixed<6>(p, v); }
template <Octet T>
constexpr void store_be64(T* p, std::uint64_t v) { detail::store_be_fixed<8>(p, v); }

// Appends the low `count` (0..8) bytes of v to a byte container (vector<std::byte>, a
// vector<unsigned char> with any allocator, std::string). Grows with resize, not insert.
template <class Container>
void append_be(Container& out, std::uint64_t v, std::size_t count) {
  const std::size_t at = out.size();
  out.resize(at + count);
  store_be(out.data() + at, v, count);
}

// The fewest bytes that hold v (0 for 0): the length of a CoAP uint option (RFC 7252 §3.2).
constexpr std::size_t min_be_size(std::uint64_t v) {
  std::size_t n = 0;
  for (; v != 0; v >>= 8) ++n;
  return n;
}

// ---- hex ----

inline constexpr char hex_lower[] = "0123456789abcdef";
inline constexpr char hex_upper[] = "0123456789ABCDEF";

// 0..15 for '0'-'9', 'a'-'f', 'A'-'F'; -1 otherwise.
constexpr int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Two lower-case hex digits per byte, no separators.
template <Octet T>
void append_hex(std::string& out, std::span<T> in) {
  for (T b : in) {
    const unsigned c = octet(b);
    out.push_back(hex_lower[c >> 4]);
    out.push_back(hex_lower[c & 0xf]);
  }
}
template <Octet T>
std::string hex_encode(std::span<T> in) {
  std::string out;
  out.reserve(in.size() * 2);
  append_hex(out, in);
  return out;
}
inline std::string hex_encode(std::string_view in) { return hex_encode(std::span<const char>(in)); }

enum class HexCase { any, lower_only };

// Decodes an even number of hex digits (no separators; upper case too unless lower_only) onto the
// end of `out` (any container of one-byte values with push_back). False, with `out` partly
// written, on an odd length or a non-hex character; the caller discards `out` then.
template <class Container>
bool append_unhex(Container& out, std::string_view hex, HexCase accept = HexCase::any) {
  if (hex.size() % 2 != 0) return false;
  const auto value = [accept](char c) { return accept == HexCase::lower_only && c >= 'A' && c <= 'F' ? -1 : hex_value(c); };
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = value(hex[i]), lo = value(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<typename Container::value_type>(hi * 16 + lo));
  }
  return true;
}

}  // namespace coapgw::bytes
