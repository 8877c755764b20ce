#include "dtls/engine.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>

#include "common/log.hpp"
#include "dtls/record_layer.hpp"
#include "dtls/server_context.hpp"
#include "dtls/ssl_glue.hpp"

namespace coapgw::dtls {
namespace {

// What an established SSL object still holds with its record buffers freed
// (OpenSSL 3.0, PSK-AES128-CCM8), from bench/dtls_memory.cpp: ~22 KB is the
// handshake buffer OpenSSL keeps for DTLS over UDP, ~8 KB the SSL struct,
// the rest session, cipher contexts and the retransmission queue. Issue 8
// frees the whole object.
constexpr std::size_t ssl_object_estimate = 32 * 1024;

constexpr std::uint8_t alert_bad_record_mac = 20;

std::string subject_common_name(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return {};
  X509_NAME* name = X509_get_subject_name(cert);
  const int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return {};
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  const int length = ASN1_STRING_to_UTF8(&utf8, data);
  if (length < 0) return {};
  std::string cn(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  return cn;
}

}  // namespace

Engine::Engine(ServerContext& context, ssl_st* ssl, const Address& peer, time_point now)
    : context_(&context),
      ssl_(ssl),
      peer_(peer),
      handshake_deadline_(now + context.settings().handshake_timeout),
      last_now_(now) {
  pipe_.mtu_overhead = peer.is_v6() ? 48 : 28;
  SSL_set_app_data(ssl_, this);
  BIO_set_data(SSL_get_rbio(ssl_), &pipe_);
  DTLS_set_timer_cb(ssl_, detail::Callbacks::dtls_timer);
  DTLS_set_link_mtu(ssl_, static_cast<long>(context.settings().mtu));
}

Engine::~Engine() {
  record_layer_.reset();
  if (ssl_ != nullptr) SSL_free(ssl_);
  OPENSSL_cleanse(psk_key_.data(), psk_key_.size());
}

std::span<const std::byte> Engine::psk_key() const {
  return {reinterpret_cast<const std::byte*>(psk_key_.data()), psk_key_.size()};
}

std::string_view Engine::psk_hint() const { return context_->settings().psk_hint; }

std::size_t Engine::max_plaintext() const {
  return std::clamp<std::size_t>(context_->settings().mtu - 48 - 13 - 8 - 16, 512, 16384);
}

std::size_t Engine::memory_estimate() const {
  std::size_t bytes = sizeof(Engine);
  if (identity_.capacity() > 15) bytes += identity_.capacity() + 1;
  if (psk_key_.capacity() > 15) bytes += psk_key_.capacity() + 1;
  if (record_layer_) bytes += record_layer_->memory_estimate();
  if (ssl_ != nullptr) bytes += ssl_object_estimate;
  return bytes;
}

void Engine::start(Output& out, time_point now) {
  last_now_ = now;
  pipe_.out = &out;  // the ClientHello is already buffered inside the SSL object
  drive_handshake(out);
  pipe_.detach();
}

void Engine::note_handshake_records(std::span<const std::byte> datagram) {
  std::span<const std::byte> rest = datagram;
  while (!rest.empty()) {
    const auto record = wire::next_record(rest, &rest);
    if (!record) break;
    if (record->epoch == 1 && record->type == static_cast<std::uint8_t>(wire::ContentType::handshake)) {
      peer_epoch1_handshake_seen_ = true;
    }
  }
}

void Engine::drive_handshake(Output& out) {
  const int result = SSL_do_handshake(ssl_);
  if (result == 1) {
    on_established(out);
    return;
  }
  const int error = SSL_get_error(ssl_, result);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    // DTLS drops records that fail to authenticate without a word, so a
    // wrong PSK would otherwise only show as a timeout on both sides. The
    // peer switched to epoch 1 and its Finished arrived, yet OpenSSL never
    // saw a Finished: it failed to decrypt, i.e. the keys differ.
    if (peer_ccs_seen_ && peer_epoch1_handshake_seen_ && !peer_finished_seen_) {
      log::debug("dtls: handshake with " + peer_.to_string() + " failed: Finished did not authenticate" +
                 (identity_.empty() ? std::string() : " (wrong key for PSK identity '" + identity_ + "')"));
      send_plaintext_alert(alert_bad_record_mac, out);
      fail(Failure::handshake_failed, out);
    }
    ERR_clear_error();
    return;
  }
  if (error == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    state_ = State::closed;
    out.closed = true;
    return;
  }
  const Failure failure = psk_identity_unknown_   ? Failure::bad_psk_identity
                          : fatal_alert_received_ ? Failure::fatal_alert_received
                                                  : Failure::handshake_failed;
  if (log::enabled(log::Level::debug)) {
    char reason[256] = "";
    if (const unsigned long code = ERR_peek_last_error(); code != 0) {
      ERR_error_string_n(code, reason, sizeof reason);
    }
    log::debug("dtls: handshake with " + peer_.to_string() + " failed (" + std::string(to_string(failure)) +
               (identity_.empty() ? std::string() : ", identity '" + identity_ + "'") + "): " + reason);
  }
  ERR_clear_error();
  fail(failure, out);
}

void Engine::on_established(Output& out) {
  state_ = State::established;
  out.established = true;
  if (psk_key_.empty()) identity_ = subject_common_name(ssl_);
  record_layer_ = detail::make_ssl_record_layer(*this);
  // Records that shared a datagram with the peer's Finished.
  switch (record_layer_->drain(out)) {
    case detail::RecordLayer::Opened::peer_closed:
      state_ = State::closed;
      out.closed = true;
      break;
    case detail::RecordLayer::Opened::fatal_alert: fail(Failure::fatal_alert_received, out); break;
    case detail::RecordLayer::Opened::failed: fail(Failure::internal, out); break;
    default: break;
  }
}

void Engine::fail(Failure failure, Output& out) {
  failure_ = failure;
  state_ = State::closed;
  out.closed = true;
  out.failure = failure;
}

void Engine::send_plaintext_alert(std::uint8_t description, Output& out) {
  // Only valid while our write epoch is still 0 (before our ChangeCipherSpec),
  // which holds whenever the peer's Finished is still being checked.
  std::vector<std::byte> d;
  const std::uint64_t sequence = pipe_.wrote_epoch0 ? pipe_.last_epoch0_sequence + 1 : 0;
  auto put = [&d](std::uint64_t value, int count) {
    for (int i = count - 1; i >= 0; --i) d.push_back(static_cast<std::byte>((value >> (8 * i)) & 0xff));
  };
  put(21, 1);
  put(0xfefd, 2);
  put(0, 2);
  put(sequence, 6);
  put(2, 2);
  put(2, 1);  // fatal
  put(description, 1);
  pipe_.last_epoch0_sequence = sequence;
  pipe_.wrote_epoch0 = true;
  out.datagrams.push_back(std::move(d));
}

void Engine::on_datagram(std::span<const std::byte> datagram, Output& out, time_point now) {
  last_now_ = now;
  if (state_ == State::closed) return;
  if (state_ == State::handshake) {
    if (now >= handshake_deadline_) {
      fail(Failure::handshake_timeout, out);
      return;
    }
    note_handshake_records(datagram);
    pipe_.feed(datagram, &out);
    drive_handshake(out);
    pipe_.detach();
    return;
  }
  std::span<const std::byte> rest = datagram;
  while (!rest.empty() && state_ == State::established) {
    const auto record = wire::next_record(rest, &rest);
    if (!record) {
      ++bad_records_;  // truncated tail: dropped, but it proves nothing about the keys
      break;
    }
    on_record(*record, out);
  }
}

void Engine::on_record(const wire::Record& record, Output& out) {
  // Other epochs: epoch 0 is the peer retransmitting the start of its last
  // flight, or a ClientHello of a rebooted device that the worker routes
  // through the cookie exchange. Plaintext alerts there must not end a live session.
  if (record.epoch != record_layer_->read_epoch()) return;
  using Opened = detail::RecordLayer::Opened;
  switch (record_layer_->open(record, out)) {
    case Opened::data: consecutive_bad_ = 0; break;
    case Opened::no_data: break;
    case Opened::replayed: ++bad_records_; break;
    case Opened::rejected:
      ++bad_records_;
      if (++consecutive_bad_ >= max_consecutive_bad_records) {
        log::debug("dtls: " + std::to_string(consecutive_bad_) + " consecutive bad records from " +
                   peer_.to_string() + ", closing");
        fail(Failure::decrypt_errors, out);
      }
      break;
    case Opened::peer_closed:
      state_ = State::closed;
      out.closed = true;
      break;
    case Opened::fatal_alert: fail(Failure::fatal_alert_received, out); break;
    case Opened::failed: fail(Failure::internal, out); break;
  }
}

bool Engine::send(std::span<const std::byte> plaintext, Output& out) {
  if (state_ != State::established || !record_layer_ || plaintext.size() > max_plaintext()) return false;
  return record_layer_->seal(plaintext, out);
}

void Engine::close(Output& out) {
  if (state_ == State::established && record_layer_) record_layer_->close_notify(out);
  state_ = State::closed;
}

std::optional<Engine::time_point> Engine::next_timer() const {
  if (state_ != State::handshake) return std::nullopt;
  timeval left{};
  if (ssl_ != nullptr && DTLSv1_get_timeout(ssl_, &left) == 1) {
    const auto retransmit = last_now_ + std::chrono::seconds(left.tv_sec) + std::chrono::microseconds(left.tv_usec);
    return std::min(retransmit, handshake_deadline_);
  }
  return handshake_deadline_;
}

void Engine::on_timer(Output& out, time_point now) {
  last_now_ = now;
  if (state_ != State::handshake) return;
  if (now >= handshake_deadline_) {
    log::debug("dtls: handshake with " + peer_.to_string() + " timed out");
    fail(Failure::handshake_timeout, out);
    return;
  }
  // OpenSSL keeps its own retransmission clock; it resends only when that is due.
  pipe_.out = &out;
  const int result = DTLSv1_handle_timeout(ssl_);
  pipe_.detach();
  if (result < 0) {
    ERR_clear_error();
    fail(Failure::handshake_timeout, out);
  }
}

}  // namespace coapgw::dtls
