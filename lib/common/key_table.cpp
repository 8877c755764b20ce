#include "common/key_table.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>

namespace coapgw {

void* map_pages(std::size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}

void unmap_pages(void* p, std::size_t bytes) noexcept {
  if (p != nullptr) ::munmap(p, bytes == 0 ? 1 : bytes);
}

namespace {

constexpr std::size_t header_bytes = 4;  // two 16-bit little-endian lengths
constexpr std::size_t min_slots = 1024;            // one page of slots
constexpr std::size_t min_arena_bytes = 4096;     // one page

std::size_t hash_of(std::string_view identity) { return std::hash<std::string_view>{}(identity); }

std::size_t read16(const std::byte* p) {
  return std::to_integer<std::size_t>(p[0]) | (std::to_integer<std::size_t>(p[1]) << 8);
}

void write16(std::byte* p, std::size_t v) {
  p[0] = static_cast<std::byte>(v & 0xff);
  p[1] = static_cast<std::byte>(v >> 8);
}

// Slots for `entries` at most half full.
std::size_t slots_for(std::size_t entries) { return std::max(min_slots, std::bit_ceil(entries * 2)); }

}  // namespace

KeyTable::Entry KeyTable::entry_at(std::uint32_t offset) const {
  const std::byte* p = arena_.data() + offset;
  const std::size_t id_len = read16(p);
  const std::size_t key_len = read16(p + 2);
  const char* id = reinterpret_cast<const char*>(p + header_bytes);
  return {std::string_view(id, id_len), std::string_view(id + id_len, key_len)};
}

std::size_t KeyTable::slot_of(std::string_view identity) const {
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = hash_of(identity) & mask;; i = (i + 1) & mask) {
    const std::uint32_t s = slots_[i];
    if (s == 0 || entry_at(s - 1).identity == identity) return i;
  }
}

std::optional<std::string_view> KeyTable::find(std::string_view identity) const {
  if (size_ == 0) return std::nullopt;
  const std::uint32_t s = slots_[slot_of(identity)];
  if (s == 0) return std::nullopt;
  return entry_at(s - 1).key;
}

std::uint32_t KeyTable::append(std::string_view identity, std::string_view key) {
  if (identity.size() > max_field_bytes || key.size() > max_field_bytes)
    throw std::length_error("key table: identity or key longer than 65535 bytes");
  const std::size_t offset = arena_.size();
  const std::size_t need = header_bytes + identity.size() + key.size();
  // Offsets are stored + 1 in 32 bits.
  if (offset + need >= max_arena_bytes) throw std::length_error("key table: more than 4 GiB of keys");
  if (arena_.capacity() < offset + need) arena_.reserve(std::max({offset + need, arena_.capacity() * 2, min_arena_bytes}));
  arena_.resize(offset + need);
  std::byte* p = arena_.data() + offset;
  write16(p, identity.size());
  write16(p + 2, key.size());
  std::memcpy(p + header_bytes, identity.data(), identity.size());
  std::memcpy(p + header_bytes + identity.size(), key.data(), key.size());
  return static_cast<std::uint32_t>(offset);
}

void KeyTable::rehash(std::size_t slot_count) {
  auto old = std::move(slots_);
  slots_.assign(slot_count, 0);
  const std::size_t mask = slot_count - 1;
  for (std::uint32_t s : old) {
    if (s == 0) continue;
    std::size_t i = hash_of(entry_at(s - 1).identity) & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

bool KeyTable::insert(std::string_view identity, std::string_view key) {
  if (slots_.size() < slots_for(size_ + 1)) rehash(slots_for(size_ + 1));
  const std::size_t i = slot_of(identity);
  if (slots_[i] != 0) return false;
  slots_[i] = append(identity, key) + 1;
  ++size_;
  return true;
}

void KeyTable::assign(std::string_view identity, std::string_view key) {
  if (insert(identity, key)) return;
  const std::size_t i = slot_of(identity);
  const std::uint32_t old = slots_[i] - 1;
  const Entry was = entry_at(old);
  // The old entry stays in the arena as dead bytes; its key is wiped now, not when the table goes.
  secure_wipe(const_cast<char*>(was.key.data()), was.key.size());
  slots_[i] = append(identity, key) + 1;
}

void KeyTable::reserve(std::size_t entries, std::size_t bytes_per_entry) {
  if (slots_.size() < slots_for(entries)) rehash(slots_for(entries));
  if (bytes_per_entry != 0) arena_.reserve(std::min(max_arena_bytes, entries * bytes_per_entry));
}

void KeyTable::shrink_to_fit() {
  // Through a copy so the one block is exactly the size; the old one is wiped by the allocator.
  if (arena_.capacity() != arena_.size()) decltype(arena_)(arena_.begin(), arena_.end()).swap(arena_);
  if (slots_.size() > slots_for(size_)) rehash(slots_for(size_));
}

}  // namespace coapgw
