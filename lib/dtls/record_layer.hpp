// coapgw::dtls::detail::RecordLayer — record protection of an established
// session, kept apart from the handshake so that issue 8 can replace the
// first implementation ("through the SSL object", SslRecordLayer) with a lean
// AEAD layer that needs only keys, counters and the replay window.
// The engine starts every established session on SslRecordLayer and switches
// to LeanRecordLayer (lean_record_layer.cpp) once the peer has proven its keys.
// Internal header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dtls/output.hpp"
#include "dtls/record_crypto.hpp"
#include "dtls/wire.hpp"

namespace coapgw::dtls {
class Engine;
struct SessionState;
namespace detail {

// RFC 6347 4.1.2.6 sliding window over the record sequence numbers of one epoch.
class ReplayWindow {
 public:
  static constexpr std::uint64_t width = 64;
  bool seen(std::uint64_t sequence) const {
    if (!any_ || sequence > max_) return false;
    const std::uint64_t distance = max_ - sequence;
    return distance >= width || ((bits_ >> distance) & 1U) != 0;
  }
  bool any() const { return any_; }
  std::uint64_t max() const { return max_; }
  std::uint64_t bits() const { return bits_; }
  // Restores a window saved with any()/max()/bits().
  void restore(bool any, std::uint64_t max, std::uint64_t bits) {
    any_ = any;
    max_ = any ? max : 0;
    bits_ = any ? (bits | 1U) : 0;
  }
  void mark(std::uint64_t sequence) {
    if (!any_) {
      any_ = true;
      max_ = sequence;
      bits_ = 1;
    } else if (sequence > max_) {
      const std::uint64_t shift = sequence - max_;
      bits_ = shift >= width ? 1 : (bits_ << shift) | 1U;
      max_ = sequence;
    } else if (max_ - sequence < width) {
      bits_ |= std::uint64_t{1} << (max_ - sequence);
    }
  }

 private:
  std::uint64_t max_ = 0;
  std::uint64_t bits_ = 0;
  bool any_ = false;
};

class RecordLayer {
 public:
  enum class Opened : std::uint8_t {
    data,         // authenticated application data, appended to out.plaintexts
    no_data,      // a valid non-application record (e.g. a retransmitted Finished, a warning alert)
    rejected,     // application record that failed to authenticate
    replayed,     // application record already seen or older than the window
    peer_closed,  // close_notify
    fatal_alert,
    failed,       // the layer is unusable
  };
  virtual ~RecordLayer() = default;
  virtual std::uint16_t read_epoch() const = 0;
  // One whole record (header + fragment) whose epoch is read_epoch().
  virtual Opened open(const wire::Record& record, Output& out) = 0;
  // Whatever the handshake left buffered (records after the peer's Finished).
  virtual Opened drain(Output& out) = 0;
  virtual bool seal(std::span<const std::byte> plaintext, Output& out) = 0;
  virtual void close_notify(Output& out) = 0;
  virtual std::size_t memory_estimate() const = 0;
  // The window over the peer's application records, which the lean layer continues.
  virtual ReplayWindow& replay_window() = 0;
  // True once the write sequence is too close to 2^48 to seal application data.
  virtual bool write_exhausted() const { return false; }
  // Fills the keys/epochs/sequence/window part; false for the SSL-backed layer.
  virtual bool export_state(SessionState*) const { return false; }
  // RFC 9146 Connection IDs: the one the peer puts in records to us (empty: none) and the one we
  // put in records to the peer (empty: plain records).
  virtual std::span<const std::byte> read_cid() const = 0;
  virtual std::span<const std::byte> write_cid() const = 0;
};

std::unique_ptr<RecordLayer> make_ssl_record_layer(Engine& engine);

// What the lean layer starts from: at the switch (from the SSL object) or at import.
struct LeanStart {
  const SuiteParams* suite = nullptr;
  TrafficKeys read;   // the client's write keys
  TrafficKeys write;  // ours
  std::uint16_t read_epoch = 1;
  std::uint16_t write_epoch = 1;
  std::uint64_t write_sequence = 0;
  ReplayWindow window;
  std::vector<std::byte> read_cid;   // empty: the peer sends plain records
  std::vector<std::byte> write_cid;  // empty: we send plain records

  void wipe_keys();  // OPENSSL_cleanse of read and write (never of the whole struct: it owns vectors)
};

// Sequence numbers are 48 bits. Application data stops `write_sequence_margin`
// short of the end so that a close_notify can still go out.
inline constexpr std::uint64_t max_write_sequence = 0xffffffffffffULL;
inline constexpr std::uint64_t write_sequence_margin = 16;
inline constexpr std::uint64_t write_sequence_limit = max_write_sequence - write_sequence_margin;

// `crypto` belongs to the worker's ServerContext and must outlive the layer.
std::unique_ptr<RecordLayer> make_lean_record_layer(RecordCrypto& crypto, const LeanStart& start);

}  // namespace detail
}  // namespace coapgw::dtls
