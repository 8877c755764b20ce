// RFC 7959 §2.2: value = NUM << 4 | M << 3 | SZX, sent in the fewest bytes (0..3).
#include "coap/block.hpp"

#include "common/bytes.hpp"

namespace coapgw::coap {

std::optional<BlockValue> decode_block(std::span<const std::byte> value) {
  if (value.size() > 3) return std::nullopt;
  const auto v = static_cast<std::uint32_t>(bytes::load_be(value));
  BlockValue block;
  block.szx = static_cast<std::uint8_t>(v & 0x7);
  if (block.szx == 7) return std::nullopt;
  block.more = (v & 0x8) != 0;
  block.num = v >> 4;
  return block;
}

std::size_t encode_block(const BlockValue& block, std::array<std::byte, 3>& out) {
  if (!is_encodable(block)) return 0;
  const std::uint32_t v = block.num << 4 | (block.more ? 0x8u : 0u) | block.szx;
  const std::size_t n = bytes::min_be_size(v);  // at most 3: is_encodable bounds num
  bytes::store_be(out.data(), v, n);
  return n;
}

std::uint8_t szx_for_size(std::size_t max_block_bytes) {
  std::uint8_t szx = 0;
  while (szx < 6 && (std::size_t{16} << (szx + 1)) <= max_block_bytes) ++szx;
  return szx;
}

}  // namespace coapgw::coap
