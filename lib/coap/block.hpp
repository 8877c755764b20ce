// coapgw::coap block-wise values — the Block1/Block2 option value of RFC 7959 §2.2.
//
// Owns only the NUM/M/SZX encoding; reassembly state lives with the session/gateway code.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace coapgw::coap {

struct BlockValue {
  std::uint32_t num = 0;  // < 2^20
  bool more = false;
  std::uint8_t szx = 6;   // block size 16 << szx; 7 is reserved (BERT, TCP only)
  std::size_t size() const { return std::size_t{16} << szx; }
  friend bool operator==(const BlockValue&, const BlockValue&) = default;
};

inline constexpr std::uint32_t max_block_num = (1u << 20) - 1;

// nullopt: more than 3 bytes, or szx == 7 (reserved on UDP).
std::optional<BlockValue> decode_block(std::span<const std::byte> value);
// Minimal length (0..3 bytes), returns bytes used; 0 is also returned, with nothing written, when
// the value cannot be encoded (num > max_block_num or szx > 6) — check with is_encodable().
std::size_t encode_block(const BlockValue& block, std::array<std::byte, 3>& out);
constexpr bool is_encodable(const BlockValue& b) { return b.num <= max_block_num && b.szx <= 6; }
// Largest szx with size <= max_block_bytes (at least 0, at most 6).
std::uint8_t szx_for_size(std::size_t max_block_bytes);

}  // namespace coapgw::coap
