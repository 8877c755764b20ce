#include "dtls/engine.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>

#include "common/bytes.hpp"
#include "common/log.hpp"
#include "dtls/flight_filter.hpp"
#include "dtls/handshake_state.hpp"
#include "dtls/record_crypto.hpp"
#include "dtls/record_layer.hpp"
#include "dtls/context.hpp"
#include "dtls/server_context.hpp"
#include "dtls/ssl_glue.hpp"

namespace coapgw::dtls {

detail::HandshakeState::~HandshakeState() {
  if (ssl == nullptr) return;
  SSL_set_app_data(ssl, nullptr);  // no callback may reach the engine from here on
  SSL_free(ssl);
}

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

std::vector<std::byte> to_der(X509* cert) {
  const int length = i2d_X509(cert, nullptr);
  if (length <= 0 || static_cast<std::size_t>(length) > max_peer_cert_size) return {};
  std::vector<std::byte> der(static_cast<std::size_t>(length));
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_X509(cert, &p) != length) return {};
  return der;
}

// The client's certificate and the chain it sent (a server's SSL_get_peer_cert_chain leaves out
// the peer's own certificate), so that the session can be verified again after the SSL object is gone.
std::vector<std::vector<std::byte>> peer_chain(SSL* ssl) {
  std::vector<std::vector<std::byte>> out;
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return out;
  out.push_back(to_der(leaf));
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl); chain != nullptr) {
    for (int i = 0; i < sk_X509_num(chain) && out.size() < max_peer_certs; ++i) {
      X509* c = sk_X509_value(chain, i);
      if (X509_cmp(c, leaf) != 0) out.push_back(to_der(c));
    }
  }
  for (const auto& der : out) {
    if (der.empty()) return {{}};  // too large to keep: an empty entry never verifies
  }
  return out;
}

}  // namespace

Engine::Engine(Context& context, ssl_st* ssl, const Address& peer, time_point now)
    : context_(&context), handshake_(std::make_unique<detail::HandshakeState>(ssl)), peer_(peer) {
  auto& hs = *handshake_;
  hs.deadline = now + context.handshake_timeout();
  hs.last_now = now;
  hs.pipe.mtu_overhead = peer.is_v6() ? 48 : 28;
  SSL_set_app_data(ssl, this);
  hs.cid.ssl = ssl;
  hs.cid.crypto = context.crypto_.get();
  hs.cid.server = context.role() == Context::Role::server;
  hs.pipe.cid = &hs.cid;
  BIO_set_data(SSL_get_rbio(ssl), &hs.pipe);
  DTLS_set_timer_cb(ssl, detail::Callbacks::dtls_timer);
  DTLS_set_link_mtu(ssl, static_cast<long>(context.mtu()));
}

Engine::Engine(Context& context, const Address& peer) : context_(&context), peer_(peer) {}

Engine::~Engine() {
  record_layer_.reset();
  handshake_.reset();
  OPENSSL_cleanse(psk_key_.data(), psk_key_.size());
}

Credentials Engine::credentials() const {
  if (!peer_certs_) return {identity_, psk_key(), {}};
  return {identity_, psk_key(), *peer_certs_};
}

ssl_st* Engine::native_handle() const { return handshake_ ? handshake_->ssl : nullptr; }

bool Engine::lean() const { return record_layer_ != nullptr && !handshake_; }

std::span<const std::byte> Engine::psk_key() const {
  return {reinterpret_cast<const std::byte*>(psk_key_.data()), psk_key_.size()};
}

std::string_view Engine::psk_hint() const { return psk_hint_; }

std::size_t Engine::max_plaintext() const { return context_->max_plaintext(); }

std::size_t Engine::memory_estimate() const {
  std::size_t bytes = sizeof(Engine);
  for (const auto* s : {&identity_, &psk_key_, &psk_hint_}) {
    if (s->capacity() > 15) bytes += s->capacity() + 1;
  }
  if (peer_certs_) {
    bytes += sizeof *peer_certs_;
    for (const auto& der : *peer_certs_) bytes += sizeof der + der.capacity();
  }
  if (record_layer_) bytes += record_layer_->memory_estimate();
  if (handshake_) bytes += sizeof(detail::HandshakeState) + ssl_object_estimate;
  return bytes;
}

void Engine::start(Output& out, time_point now) {
  auto& hs = *handshake_;
  hs.last_now = now;
  hs.pipe.out = &out;  // the ClientHello is already buffered inside the SSL object
  drive_handshake(out);
  if (handshake_) handshake_->pipe.detach();
}

void Engine::drive_handshake(Output& out) {
  auto& hs = *handshake_;
  const int result = SSL_do_handshake(hs.ssl);
  if (result == 1) {
    on_established(out);
    return;
  }
  const int error = SSL_get_error(hs.ssl, result);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    // DTLS drops records that fail to authenticate without a word, so a
    // wrong PSK would otherwise only show as a timeout on both sides. The
    // peer switched to epoch 1 and its Finished arrived, yet OpenSSL never
    // saw a Finished: it failed to decrypt, i.e. the keys differ.
    if (hs.peer_ccs_seen && hs.peer_epoch1_handshake_seen && !hs.peer_finished_seen) {
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
  const Failure failure = hs.psk_identity_unknown   ? Failure::bad_psk_identity
                          : hs.fatal_alert_received ? Failure::fatal_alert_received
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
  resumed_ = SSL_session_reused(handshake_->ssl) == 1;
  if (context_->role() == Context::Role::client) keep_resumption();
  if (psk_key_.empty()) {
    identity_ = subject_common_name(handshake_->ssl);
    if (auto chain = peer_chain(handshake_->ssl); !chain.empty())
      peer_certs_ = std::make_unique<std::vector<std::vector<std::byte>>>(std::move(chain));
  }
  record_layer_ = detail::make_ssl_record_layer(*this);
  // Records that shared a datagram with the peer's Finished.
  switch (record_layer_->drain(out)) {
    case detail::RecordLayer::Opened::data: handshake_->switch_pending = true; break;
    case detail::RecordLayer::Opened::peer_closed:
      state_ = State::closed;
      out.closed = true;
      break;
    case detail::RecordLayer::Opened::fatal_alert: fail(Failure::fatal_alert_received, out); break;
    case detail::RecordLayer::Opened::failed: fail(Failure::internal, out); break;
    default: break;
  }
}

void Engine::keep_resumption() {
  SSL_SESSION* session = SSL_get0_session(handshake_->ssl);
  if (session == nullptr || SSL_SESSION_has_ticket(session) != 1) return;
  const int length = i2d_SSL_SESSION(session, nullptr);
  if (length <= 0) return;
  resumption_.resize(static_cast<std::size_t>(length));
  auto* p = reinterpret_cast<unsigned char*>(resumption_.data());
  if (i2d_SSL_SESSION(session, &p) != length) resumption_.clear();
}

void Engine::switch_to_lean(std::span<const std::byte> proof) {
  auto& hs = *handshake_;
  if (hs.switch_failed || context_->crypto_ == nullptr) return;
  hs.switch_failed = true;  // one attempt per session; success frees hs anyway
  SSL* ssl = hs.ssl;
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  detail::LeanStart start;
  if (!detail::export_traffic_keys(ssl, context_->role() == Context::Role::server, &start.suite, &start.read,
                                   &start.write)) {
    log::warn("dtls: " + peer_.to_string() + ": cipher suite not supported by the lean record layer, "
              "session stays on the SSL object");
    return;
  }
  // The peer's record that OpenSSL just authenticated must authenticate with
  // our derived keys too: a derivation mismatch (some extension we do not
  // know) leaves the session on the SSL object instead of breaking it.
  // (`proof` is in the plain format: tls12_cid records were translated for OpenSSL.)
  bool proven = false;
  auto& crypto = *context_->crypto_;
  std::span<const std::byte> rest = proof;
  while (!rest.empty() && !proven) {
    const auto record = wire::next_record(rest, &rest);
    if (!record) break;
    if (record->epoch != 1 || record->type != static_cast<std::uint8_t>(wire::ContentType::application_data)) {
      continue;
    }
    proven = crypto.open_record(*start.suite, start.read, *record, crypto.scratch()).has_value();
  }
  if (!proven) {
    log::warn("dtls: " + peer_.to_string() + ": derived record keys do not match the SSL object's, "
              "session stays on the SSL object");
    start.wipe_keys();
    return;
  }
  start.window = record_layer_->replay_window();
  // Continue after every epoch-1 record number the SSL object used for us
  // (its Finished at least), so that no nonce is ever used twice.
  start.write_sequence = hs.pipe.wrote_epoch1 ? hs.pipe.last_epoch1_sequence + 1 : 0;
  if (hs.cid.negotiated) {
    start.read_cid = hs.cid.read;
    start.write_cid = hs.cid.write;
  }
  auto lean = detail::make_lean_record_layer(*context_->crypto_, start);
  start.wipe_keys();
  if (!lean) return;
  const char* suite_name = SSL_CIPHER_get_name(cipher);  // static table, outlives the SSL object
  record_layer_ = std::move(lean);
  if (context_->role() == Context::Role::server) static_cast<ServerContext*>(context_)->recycle(*handshake_, generation_);
  handshake_.reset();  // SSL_free unless recycled: the ~22 KB DTLS buffers, the SSL struct, the session
  if (!log::enabled(log::Level::debug)) return;  // the message costs an address formatted per handshake
  log::debug("dtls: " + peer_.to_string() + " proved its keys, record protection moved to the lean layer (" + suite_name + ")");
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
  auto& pipe = handshake_->pipe;
  std::vector<std::byte> d;
  const std::uint64_t sequence = pipe.wrote_epoch0 ? pipe.last_epoch0_sequence + 1 : 0;
  auto put = [&d](std::uint64_t value, std::size_t count) { bytes::append_be(d, value, count); };
  put(21, 1);
  put(0xfefd, 2);
  put(0, 2);
  put(sequence, 6);
  put(2, 2);
  put(2, 1);  // fatal
  put(description, 1);
  pipe.last_epoch0_sequence = sequence;
  pipe.wrote_epoch0 = true;
  out.datagrams.push_back(std::move(d));
}

std::span<const std::byte> Engine::feed_handshake(std::span<const std::byte> datagram, Output& out) {
  auto& hs = *handshake_;
  // RFC 9146: with our CID negotiated the peer's Finished comes as a tls12_cid record, which
  // OpenSSL cannot read. The records before it (ClientKeyExchange, ChangeCipherSpec) go first, so
  // that the master secret exists; then the rest is translated (see cid_handshake.hpp).
  // In an abbreviated handshake (RFC 5077 resumption) the client gets the ServerHello, which
  // negotiates the CID, and the server's tls12_cid Finished in one datagram: the split is made on
  // the CID we asked for (read), before OpenSSL has seen the ServerHello.
  std::span<const std::byte> prefix = datagram, rest = datagram;
  if (!hs.cid.read.empty()) {
    std::span<const std::byte> scan = datagram;
    while (!scan.empty()) {
      const auto record = wire::next_record(scan, &scan, hs.cid.read.size());
      if (!record) break;
      if (record->type == static_cast<std::uint8_t>(wire::ContentType::tls12_cid)) {
        const auto at = static_cast<std::size_t>(record->whole.data() - datagram.data());
        prefix = datagram.first(at);
        rest = datagram.subspan(at);
        break;
      }
    }
  }
  if (rest.data() == datagram.data() && prefix.size() == datagram.size()) {
    hs.pipe.feed(datagram, &out);
    drive_handshake(out);
    return datagram;
  }
  if (!prefix.empty()) {
    // The Finished is not in this part: the wrong-key check must wait for the translated rest.
    const bool finished_coming = hs.peer_epoch1_handshake_seen;
    hs.peer_epoch1_handshake_seen = false;
    hs.pipe.feed(prefix, &out);
    drive_handshake(out);
    hs.peer_epoch1_handshake_seen = finished_coming;
    if (state_ == State::closed) return {};
  }
  std::size_t dropped = 0;
  // Still not negotiated after the prefix: the server took no CID, OpenSSL drops the record.
  const auto translated = hs.cid.translates_inbound() ? hs.cid.inbound(rest, &dropped) : rest;
  bad_records_ += dropped;
  // Nothing left (the Finished did not authenticate): driving without input still runs the
  // wrong-key check.
  hs.pipe.feed(translated, &out);
  if (translated.empty()) hs.pipe.detach();
  drive_handshake(out);
  return translated;
}

void Engine::on_datagram(std::span<const std::byte> datagram, Output& out, time_point now) {
  if (handshake_) handshake_->last_now = now;
  if (state_ == State::closed) return;
  if (state_ == State::handshake) {
    if (now >= handshake_->deadline) {
      fail(Failure::handshake_timeout, out);
      return;
    }
    // Records a client cannot legitimately send now are dropped and counted before OpenSSL sees
    // them: unauthenticated junk from the device's address must not end the handshake.
    // (Server role only: the flight filter knows the client's flights.)
    FilteredFlight flight;
    const std::size_t cid_length = handshake_->cid.translates_inbound() ? handshake_->cid.read.size() : 0;
    if (context_->role() == Context::Role::server) flight = filter_client_flight(datagram, cid_length);
    if (flight.finished_after_ccs) handshake_->peer_epoch1_handshake_seen = true;
    if (flight.changed) {
      bad_records_ += flight.dropped;
      if (flight.kept.empty()) return;
      datagram = flight.kept;
    }
    datagram = feed_handshake(datagram, out);
    handshake_->pipe.detach();
    if (state_ == State::established && handshake_->switch_pending) {
      // Application records came with the peer's Finished and OpenSSL opened
      // them; it did not tell which, so every epoch-1 application record number
      // of the datagram counts as seen (a forged one only costs its number).
      std::span<const std::byte> rest = datagram;
      while (!rest.empty()) {
        const auto record = wire::next_record(rest, &rest);
        if (!record) break;
        if (record->epoch == 1 && record->type == static_cast<std::uint8_t>(wire::ContentType::application_data)) {
          record_layer_->replay_window().mark(record->sequence);
        }
      }
      switch_to_lean(datagram);
    }
    return;
  }
  std::span<const std::byte> rest = datagram;
  while (!rest.empty() && state_ == State::established) {
    const auto record = wire::next_record(rest, &rest, record_layer_->read_cid().size());
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
  if (record.epoch != record_layer_->read_epoch()) {
    // Epoch-0 handshake and ChangeCipherSpec records are the peer retransmitting its last flight
    // (our Finished was lost): expected, not counted. Anything else is dropped and counted.
    const bool retransmission =
        record.epoch == 0 && record.type != static_cast<std::uint8_t>(wire::ContentType::alert) &&
        record.type != static_cast<std::uint8_t>(wire::ContentType::application_data);
    if (!retransmission) ++bad_records_;
    return;
  }
  using Opened = detail::RecordLayer::Opened;
  if (handshake_ && record.type == static_cast<std::uint8_t>(wire::ContentType::tls12_cid)) {
    // Still on the SSL object: OpenSSL reads the record in the plain format.
    std::size_t dropped = 0;
    const auto translated = handshake_->cid.translates_inbound() ? handshake_->cid.inbound(record.whole, &dropped)
                                                                 : std::span<const std::byte>();
    const auto plain = wire::next_record(translated, nullptr);
    if (!plain) {
      ++bad_records_;
      return;
    }
    on_record(*plain, out);
    return;
  }
  const auto& window = record_layer_->replay_window();
  const bool had_any = window.any();
  const std::uint64_t max_before = window.max();
  const auto opened = record_layer_->open(record, out);
  if ((opened == Opened::data || opened == Opened::no_data) && window.any() && (!had_any || window.max() > max_before)) {
    out.newest = true;
  }
  switch (opened) {
    case Opened::data:
      if (handshake_) switch_to_lean(record.whole);  // the peer proved it has the keys
      break;
    case Opened::no_data: break;
    // Failed authentication or a replay proves nothing about the sender: an off-path attacker can
    // produce either with the device's address. Dropped and counted, never a reason to close.
    case Opened::replayed:
    case Opened::rejected: ++bad_records_; break;
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
  if (record_layer_->write_exhausted()) {
    // Renegotiation is refused, so the session cannot get fresh keys: end it
    // while a close_notify can still be sealed with an unused record number.
    log::debug("dtls: write sequence space of " + peer_.to_string() + " used up, closing");
    record_layer_->close_notify(out);
    fail(Failure::sequence_exhausted, out);
    return false;
  }
  return record_layer_->seal(plaintext, out);
}

void Engine::close(Output& out) {
  if (state_ == State::established && record_layer_) record_layer_->close_notify(out);
  state_ = State::closed;
}

std::optional<Engine::time_point> Engine::next_timer() const {
  if (state_ != State::handshake || !handshake_) return std::nullopt;
  const auto& hs = *handshake_;
  timeval left{};
  if (DTLSv1_get_timeout(hs.ssl, &left) == 1) {
    const auto retransmit = hs.last_now + std::chrono::seconds(left.tv_sec) + std::chrono::microseconds(left.tv_usec);
    return std::min(retransmit, hs.deadline);
  }
  return hs.deadline;
}

void Engine::on_timer(Output& out, time_point now) {
  if (state_ != State::handshake || !handshake_) return;
  auto& hs = *handshake_;
  hs.last_now = now;
  if (now >= hs.deadline) {
    log::debug("dtls: handshake with " + peer_.to_string() + " timed out");
    fail(Failure::handshake_timeout, out);
    return;
  }
  // OpenSSL keeps its own retransmission clock; it resends only when that is due.
  hs.pipe.out = &out;
  const int result = DTLSv1_handle_timeout(hs.ssl);
  hs.pipe.detach();
  if (result < 0) {
    ERR_clear_error();
    fail(Failure::handshake_timeout, out);
  }
}

}  // namespace coapgw::dtls
