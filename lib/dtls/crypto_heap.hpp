// coapgw::dtls crypto heap — OpenSSL's allocations on a SpanHeap of their own (issue 17, item 2).
//
// Once installed (first thing in main, before OpenSSL allocates anything), every OPENSSL_malloc /
// realloc / free goes to SpanHeaps of its own (16 shards; each allocating thread takes one, so
// workers do not share a lock): the handshake state (SSL objects, record
// buffers, handshake hashes: tens of KB each, thousands at once in a storm) then never shares a
// page with established sessions, which hold no OpenSSL memory after the lean switch, and its
// pages go back to the system when the handshakes end (trim_crypto_heap, called with malloc_trim).
// Not installed in sanitizer builds (ASan/TSan must see every allocation) nor when
// COAPGW_CRYPTO_HEAP=0 is in the environment; then OpenSSL uses the C library as before.
#pragma once

#include <cstddef>
#include <optional>

#include "common/span_heap.hpp"

namespace coapgw::dtls {

// Address space reserved for the heap, over all shards (MAP_NORESERVE: only touched pages cost
// memory). 1 GiB a shard holds ~15,000 server handshakes in flight (~66 KB each, measured with
// `coapgw_dtls_memory N PSK-AES128-CCM8 1 inflight`) on one worker; beyond it allocations fall
// back to the C library.
inline constexpr std::size_t crypto_heap_reserve = std::size_t{16} << 30;

// True when OpenSSL now allocates from the heap; false (and OpenSSL unchanged) when it had already
// allocated, in a sanitizer build, when disabled by the environment, or when the range could not
// be reserved.
bool install_crypto_heap();
// Returns empty spans' pages to the system; 0 when not installed.
std::size_t trim_crypto_heap();
// The heap's figures; nullopt when not installed.
std::optional<SpanHeap::Stats> crypto_heap_stats();

}  // namespace coapgw::dtls
