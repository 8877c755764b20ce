// LeanRecordLayer: record protection of an established session without the
// SSL object. Per session it keeps only the suite, the two traffic keys/IVs,
// the epochs, the next write sequence number and the replay window; the
// cipher contexts and the plaintext scratch are the worker's (RecordCrypto).
//
// Invariants that matter for security:
// - every sealed record uses a fresh write sequence number (the nonce), and
//   the number only ever grows; nothing is sealed at or past write_sequence_limit
//   except the final close_notify;
// - nothing reaches Output::plaintexts unless it authenticated, and a record
//   number is marked in the replay window only after it authenticated;
// - with a Connection ID negotiated for a direction (RFC 9146), records in that
//   direction are tls12_cid records carrying exactly that CID; plain records
//   are refused then, and tls12_cid records are refused without one.
#include <openssl/crypto.h>

#include <algorithm>

#include "dtls/record_layer.hpp"
#include "dtls/session_state.hpp"

namespace coapgw::dtls::detail {
namespace {

constexpr std::uint8_t alert_level_warning = 1;
constexpr std::uint8_t alert_level_fatal = 2;
constexpr std::uint8_t alert_close_notify = 0;
constexpr std::uint8_t alert_no_renegotiation = 100;
constexpr std::uint8_t handshake_client_hello = 1;

SecretBytes to_vector(const std::array<std::byte, max_key_size>& a, std::size_t n) {
  return {a.begin(), a.begin() + static_cast<long>(n)};
}
SecretBytes to_vector(const std::array<std::byte, max_iv_size>& a, std::size_t n) {
  return {a.begin(), a.begin() + static_cast<long>(n)};
}

class LeanRecordLayer final : public RecordLayer {
 public:
  LeanRecordLayer(RecordCrypto& crypto, const LeanStart& start)
      : crypto_(&crypto),
        suite_(start.suite),
        read_(start.read),
        write_(start.write),
        window_(start.window),
        write_sequence_(start.write_sequence),
        read_epoch_(start.read_epoch),
        write_epoch_(start.write_epoch),
        read_cid_(start.read_cid),
        write_cid_(start.write_cid) {}

  ~LeanRecordLayer() override {
    OPENSSL_cleanse(&read_, sizeof read_);
    OPENSSL_cleanse(&write_, sizeof write_);
  }

  std::uint16_t read_epoch() const override { return read_epoch_; }

  Opened open(const wire::Record& record, Output& out) override {
    const bool cid = record.type == static_cast<std::uint8_t>(wire::ContentType::tls12_cid);
    if (cid != !read_cid_.empty()) return Opened::rejected;
    if (cid && !std::equal(record.cid.begin(), record.cid.end(), read_cid_.begin(), read_cid_.end())) {
      return Opened::rejected;
    }
    // A tls12_cid record hides its type: a replayed one counts as replayed application data.
    const bool application =
        cid || record.type == static_cast<std::uint8_t>(wire::ContentType::application_data);
    if (window_.seen(record.sequence)) return application ? Opened::replayed : Opened::no_data;
    const auto scratch = crypto_->scratch();
    const auto opened = crypto_->open_record(*suite_, read_, record, scratch);
    if (!opened) return Opened::rejected;
    window_.mark(record.sequence);
    const auto plaintext = scratch.first(opened->length);
    switch (static_cast<wire::ContentType>(opened->type)) {
      case wire::ContentType::application_data:
        out.plaintexts.emplace_back(plaintext.begin(), plaintext.end());
        return Opened::data;
      case wire::ContentType::alert: {
        if (plaintext.size() != 2) return Opened::no_data;
        const auto level = std::to_integer<std::uint8_t>(plaintext[0]);
        const auto description = std::to_integer<std::uint8_t>(plaintext[1]);
        if (description == alert_close_notify) return Opened::peer_closed;
        return level == alert_level_fatal ? Opened::fatal_alert : Opened::no_data;
      }
      case wire::ContentType::handshake:
        // A renegotiating ClientHello under the session keys: refused as
        // OpenSSL would, with a warning; the session goes on. Anything else
        // (a late retransmitted Finished) is ignored.
        if (!plaintext.empty() && std::to_integer<std::uint8_t>(plaintext[0]) == handshake_client_hello) {
          send_alert(alert_level_warning, alert_no_renegotiation, out, write_sequence_limit);
        }
        return Opened::no_data;
      default: return Opened::no_data;
    }
  }

  Opened drain(Output&) override { return Opened::no_data; }

  bool seal(std::span<const std::byte> plaintext, Output& out) override {
    return seal_type(static_cast<std::uint8_t>(wire::ContentType::application_data), plaintext, out,
                     write_sequence_limit);
  }

  void close_notify(Output& out) override {
    send_alert(alert_level_warning, alert_close_notify, out, max_write_sequence + 1);
  }

  std::size_t memory_estimate() const override {
    return sizeof(*this) + read_cid_.capacity() + write_cid_.capacity();
  }
  ReplayWindow& replay_window() override { return window_; }
  std::span<const std::byte> read_cid() const override { return read_cid_; }
  std::span<const std::byte> write_cid() const override { return write_cid_; }
  bool write_exhausted() const override { return write_sequence_ >= write_sequence_limit; }

  bool export_state(SessionState* state) const override {
    state->cipher_suite = suite_->id;
    state->client_write_key = to_vector(read_.key, suite_->key_size);
    state->server_write_key = to_vector(write_.key, suite_->key_size);
    state->client_write_iv = to_vector(read_.iv, suite_->fixed_iv_size);
    state->server_write_iv = to_vector(write_.iv, suite_->fixed_iv_size);
    state->read_epoch = read_epoch_;
    state->write_epoch = write_epoch_;
    state->write_sequence = write_sequence_;
    state->replay_any = window_.any();
    state->replay_max = window_.max();
    state->replay_bits = window_.bits();
    state->local_cid = read_cid_;
    state->peer_cid = write_cid_;
    return true;
  }

 private:
  // Seals with the next sequence number if it is below `limit`; the number is
  // consumed even when sealing fails, so it can never be used twice.
  bool seal_type(std::uint8_t type, std::span<const std::byte> plaintext, Output& out, std::uint64_t limit) {
    if (write_sequence_ >= limit || write_sequence_ > max_write_sequence) return false;
    const std::uint64_t sequence = write_sequence_++;
    std::vector<std::byte> record;
    record.reserve(wire::record_header_size + write_cid_.size() + suite_->explicit_nonce_size + plaintext.size() + 1 +
                   suite_->tag_size);
    if (!crypto_->seal_record(*suite_, write_, type, write_epoch_, sequence, plaintext, &record, write_cid_)) {
      return false;
    }
    out.datagrams.push_back(std::move(record));
    return true;
  }

  void send_alert(std::uint8_t level, std::uint8_t description, Output& out, std::uint64_t limit) {
    const std::byte alert[2] = {static_cast<std::byte>(level), static_cast<std::byte>(description)};
    seal_type(static_cast<std::uint8_t>(wire::ContentType::alert), alert, out, limit);
  }

  RecordCrypto* crypto_;
  const SuiteParams* suite_;
  TrafficKeys read_;
  TrafficKeys write_;
  ReplayWindow window_;
  std::uint64_t write_sequence_;
  std::uint16_t read_epoch_;
  std::uint16_t write_epoch_;
  std::vector<std::byte> read_cid_;
  std::vector<std::byte> write_cid_;
};

}  // namespace

void LeanStart::wipe_keys() {
  OPENSSL_cleanse(&read, sizeof read);
  OPENSSL_cleanse(&write, sizeof write);
}

std::unique_ptr<RecordLayer> make_lean_record_layer(RecordCrypto& crypto, const LeanStart& start) {
  if (start.suite == nullptr) return nullptr;
  return std::make_unique<LeanRecordLayer>(crypto, start);
}

}  // namespace coapgw::dtls::detail
