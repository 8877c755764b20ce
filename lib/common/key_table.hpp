// coapgw::KeyTable — a compact identity -> secret map for very many entries (a million device keys).
//
// Every entry lives in one arena (identity length, key length, identity bytes, key bytes, back to
// back) and an open-addressing index of 32-bit arena offsets finds it: about identity + key + 10
// bytes per entry instead of two heap strings and a hash node each. The arena is SecretBytes, so
// every key byte is wiped when the table goes (or the arena grows). Built once on a loading thread,
// then shared read-only (std::shared_ptr<const KeyTable>); lookups allocate nothing and take no lock.
// Both live in whole pages of their own (PageAllocator: mmap/munmap), so a reload that frees a
// million-key table gives every byte back to the system instead of leaving holes in malloc's heap.
// Bounds: identity and key at most 65,535 bytes each, the arena at most 4 GiB (max_arena_bytes);
// insert() beyond them throws std::length_error (config load only, never on the data path).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "common/secret.hpp"

namespace coapgw {

void* map_pages(std::size_t bytes);  // throws std::bad_alloc
void unmap_pages(void* p, std::size_t bytes) noexcept;

// Whole pages from the kernel per block; munmap on release. For a few large, long-lived blocks.
template <class T>
struct PageAllocator {
  using value_type = T;
  PageAllocator() noexcept = default;
  template <class U>
  PageAllocator(const PageAllocator<U>&) noexcept {}  // NOLINT: rebinding
  T* allocate(std::size_t n) { return static_cast<T*>(map_pages(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { unmap_pages(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const PageAllocator<U>&) const noexcept { return true; }
};

class KeyTable {
 public:
  static constexpr std::size_t max_field_bytes = 0xffff;
  static constexpr std::size_t max_arena_bytes = 0xffffffffu;

  // Adds identity -> key unless the identity is already there: false (and nothing changed) then.
  bool insert(std::string_view identity, std::string_view key);
  // Adds or replaces (the replaced key's bytes are wiped at once).
  void assign(std::string_view identity, std::string_view key);
  // The key, or nullopt when the identity is unknown. Valid while the table lives.
  std::optional<std::string_view> find(std::string_view identity) const;

  // Room for `entries` entries of about `bytes_per_entry` arena bytes each (identity + key + 4).
  void reserve(std::size_t entries, std::size_t bytes_per_entry = 0);
  // Gives back the arena's and the index's spare capacity once loading is done.
  void shrink_to_fit();

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Bytes held on the heap (arena and index capacity), for the memory figures.
  std::size_t memory_bytes() const { return arena_.capacity() + slots_.capacity() * sizeof(std::uint32_t); }

 private:
  struct Entry {
    std::string_view identity, key;
  };
  Entry entry_at(std::uint32_t offset) const;
  // The slot holding `identity`, or the empty slot where it would go.
  std::size_t slot_of(std::string_view identity) const;
  std::uint32_t append(std::string_view identity, std::string_view key);
  void rehash(std::size_t slot_count);

  std::vector<std::byte, WipingAllocator<std::byte, PageAllocator<std::byte>>> arena_;
  std::vector<std::uint32_t, PageAllocator<std::uint32_t>> slots_;  // arena offset + 1; 0 = empty; size a power of two, at most half full
  std::size_t size_ = 0;
};

}  // namespace coapgw
