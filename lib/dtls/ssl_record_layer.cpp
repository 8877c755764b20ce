// The first RecordLayer: record protection by the session's SSL object.
// It feeds OpenSSL one record at a time so that each record's fate (data,
// dropped for failing authentication, replay) is known, which OpenSSL's DTLS
// code otherwise swallows silently.
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "dtls/engine.hpp"
#include "dtls/handshake_state.hpp"
#include "dtls/record_layer.hpp"
#include "dtls/context.hpp"

namespace coapgw::dtls::detail {

class SslRecordLayer final : public RecordLayer {
 public:
  explicit SslRecordLayer(Engine& engine) : engine_(engine) {}

  std::uint16_t read_epoch() const override { return 1; }  // no renegotiation

  Opened open(const wire::Record& record, Output& out) override {
    const bool application = record.type == static_cast<std::uint8_t>(wire::ContentType::application_data);
    // OpenSSL would drop a replay silently too; knowing it here keeps replays
    // from counting as authentication failures.
    if (application && replay_.seen(record.sequence)) return Opened::replayed;
    if (!acquire_buffers()) return Opened::failed;
    hs().pipe.feed(record.whole, &out);
    bool got_data = false;
    const Opened read = read_all(out, &got_data);
    hs().pipe.detach();
    release_buffers();
    if (read != Opened::no_data && read != Opened::data) return read;
    if (!application) return Opened::no_data;
    if (!got_data) return Opened::rejected;
    replay_.mark(record.sequence);
    return Opened::data;
  }

  Opened drain(Output& out) override {
    hs().pipe.out = &out;
    bool got_data = false;
    const Opened read = read_all(out, &got_data);
    hs().pipe.detach();
    release_buffers();
    return read;
  }

  bool seal(std::span<const std::byte> plaintext, Output& out) override {
    if (!acquire_buffers()) return false;
    hs().pipe.out = &out;
    const int written = SSL_write(hs().ssl, plaintext.data(), static_cast<int>(plaintext.size()));
    hs().pipe.detach();
    if (written <= 0) ERR_clear_error();
    release_buffers();
    return written == static_cast<int>(plaintext.size());
  }

  void close_notify(Output& out) override {
    if (!acquire_buffers()) return;
    hs().pipe.out = &out;
    SSL_shutdown(hs().ssl);
    hs().pipe.detach();
    ERR_clear_error();
    release_buffers();
  }

  std::size_t memory_estimate() const override { return sizeof(*this); }
  ReplayWindow& replay_window() override { return replay_; }
  // Records in the tls12_cid format are translated by the engine (CidHandshake) on their way in
  // and by the BIO on their way out; OpenSSL itself only sees plain records.
  std::span<const std::byte> read_cid() const override {
    const auto& cid = engine_.handshake_->cid;
    return cid.negotiated ? std::span<const std::byte>(cid.read) : std::span<const std::byte>();
  }
  std::span<const std::byte> write_cid() const override {
    const auto& cid = engine_.handshake_->cid;
    return cid.negotiated ? std::span<const std::byte>(cid.write) : std::span<const std::byte>();
  }

 private:
  // SSL_MODE_RELEASE_BUFFERS does not cover DTLS in OpenSSL 3.0: the two
  // ~17 KB record buffers would stay with every idle session. Nothing is
  // pending between datagrams, so they go after each call and come back
  // before the next one (OpenSSL's DTLS write path does not re-create its
  // buffer, and reading can trigger a retransmission, i.e. a write).
  bool acquire_buffers() {
    if (SSL_alloc_buffers(hs().ssl) == 1) return true;
    ERR_clear_error();
    return false;
  }
  void release_buffers() { SSL_free_buffers(hs().ssl); }

  // Reads until OpenSSL wants more input; no_data means "nothing ended".
  Opened read_all(Output& out, bool* got_data) {
    std::byte* buffer = engine_.context_->read_buffer_.get();
    const int capacity = static_cast<int>(Context::read_buffer_size);
    for (;;) {
      const int n = SSL_read(hs().ssl, buffer, capacity);
      if (n > 0) {
        out.plaintexts.emplace_back(buffer, buffer + n);
        *got_data = true;
        continue;
      }
      const int error = SSL_get_error(hs().ssl, n);
      ERR_clear_error();
      if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        return *got_data ? Opened::data : Opened::no_data;
      }
      if (error == SSL_ERROR_ZERO_RETURN) return Opened::peer_closed;
      return hs().fatal_alert_received ? Opened::fatal_alert : Opened::failed;
    }
  }

  HandshakeState& hs() { return *engine_.handshake_; }

  Engine& engine_;
  ReplayWindow replay_;
};

std::unique_ptr<RecordLayer> make_ssl_record_layer(Engine& engine) {
  return std::make_unique<SslRecordLayer>(engine);
}

}  // namespace coapgw::dtls::detail
