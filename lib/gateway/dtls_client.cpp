#include "gateway/dtls_client.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/bytes.hpp"
#include "common/openssl_error.hpp"
#include "dtls/ciphers.hpp"

namespace coapgw::gateway {
namespace {

// DTLS 1.2 record header: type, version, epoch, sequence number, length (RFC 6347 §4.1).
constexpr std::size_t record_header = 13;
// Largest record OpenSSL hands to one SSL_read, plus headroom; one CoAP message per record.
constexpr std::size_t max_record_plaintext = 16384;

unsigned int psk_client_callback(SSL* ssl, const char* /*hint*/, char* identity, unsigned int max_identity_len,
                                 unsigned char* psk, unsigned int max_psk_len) {
  auto* s = static_cast<const DtlsClientSettings*>(SSL_get_app_data(ssl));
  if (!s) return 0;
  // The identity goes out NUL-terminated; both bounds were checked at start-up, checked again here
  // because OpenSSL owns the buffer sizes.
  if (s->psk_identity.size() + 1 > max_identity_len || s->psk_key.size() > max_psk_len) return 0;
  std::memcpy(identity, s->psk_identity.c_str(), s->psk_identity.size() + 1);
  std::memcpy(psk, s->psk_key.data(), s->psk_key.size());
  return static_cast<unsigned int>(s->psk_key.size());
}

}  // namespace

struct DtlsClient::Impl {
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  BIO* rbio = nullptr;  // owned by ssl
  BIO* wbio = nullptr;  // owned by ssl

  ~Impl() {
    drop_ssl();
    SSL_CTX_free(ctx);
  }
  void drop_ssl() {
    SSL_free(ssl);  // frees both BIOs
    ssl = nullptr;
    rbio = nullptr;
    wbio = nullptr;
  }
};

DtlsClient::DtlsClient(DtlsClientSettings settings) : settings_(std::move(settings)), impl_(std::make_unique<Impl>()) {
  if (settings_.psk_key.empty()) throw std::runtime_error("coaps upstream: psk key is empty");
  if (settings_.psk_identity.size() > PSK_MAX_IDENTITY_LEN) {
    throw std::runtime_error("coaps upstream: psk identity longer than " + std::to_string(PSK_MAX_IDENTITY_LEN));
  }
  if (settings_.psk_key.size() > PSK_MAX_PSK_LEN) {
    throw std::runtime_error("coaps upstream: psk key longer than " + std::to_string(PSK_MAX_PSK_LEN));
  }
  if (settings_.psk_identity.find('\0') != std::string::npos) {
    throw std::runtime_error("coaps upstream: psk identity contains a NUL byte");
  }
  if (settings_.link_mtu < 256 || settings_.link_mtu > 65507) {
    throw std::runtime_error("coaps upstream: link MTU out of range");
  }
  impl_->ctx = SSL_CTX_new(DTLS_client_method());
  if (!impl_->ctx) throw std::runtime_error(openssl_error("coaps upstream: SSL_CTX_new"));
  if (SSL_CTX_set_min_proto_version(impl_->ctx, DTLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(impl_->ctx, DTLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(impl_->ctx, dtls::ciphers::psk) != 1) {
    throw std::runtime_error(openssl_error("coaps upstream: DTLS client context"));
  }
  SSL_CTX_set_psk_client_callback(impl_->ctx, psk_client_callback);
}

DtlsClient::~DtlsClient() = default;

void DtlsClient::fail(std::string why) {
  state_ = State::failed;
  error_ = std::move(why);
}

bool DtlsClient::connect() {
  impl_->drop_ssl();
  error_.clear();
  ERR_clear_error();
  impl_->ssl = SSL_new(impl_->ctx);
  if (!impl_->ssl) {
    fail(openssl_error("SSL_new"));
    return false;
  }
  impl_->rbio = BIO_new(BIO_s_mem());
  impl_->wbio = BIO_new(BIO_s_mem());
  if (!impl_->rbio || !impl_->wbio) {
    BIO_free(impl_->rbio);
    BIO_free(impl_->wbio);
    impl_->drop_ssl();
    fail("BIO_new failed");
    return false;
  }
  // An empty read BIO means "no datagram yet", not end of stream.
  BIO_set_mem_eof_return(impl_->rbio, -1);
  SSL_set_bio(impl_->ssl, impl_->rbio, impl_->wbio);
  SSL_set_app_data(impl_->ssl, &settings_);
  // Memory BIOs cannot report a path MTU: use the configured one.
  SSL_set_options(impl_->ssl, SSL_OP_NO_QUERY_MTU);
  DTLS_set_link_mtu(impl_->ssl, static_cast<long>(settings_.link_mtu));
  SSL_set_connect_state(impl_->ssl);
  state_ = State::handshake;
  const int rc = SSL_do_handshake(impl_->ssl);
  if (rc <= 0 && SSL_get_error(impl_->ssl, rc) != SSL_ERROR_WANT_READ) {
    fail(openssl_error("DTLS handshake start"));
    return false;
  }
  return true;
}

void DtlsClient::receive(std::span<const std::byte> datagram, std::vector<std::vector<std::byte>>& messages) {
  if (!impl_->ssl || (state_ != State::handshake && state_ != State::established)) return;
  if (datagram.empty()) return;
  ERR_clear_error();
  BIO_write(impl_->rbio, datagram.data(), static_cast<int>(datagram.size()));
  if (state_ == State::handshake) {
    const int rc = SSL_do_handshake(impl_->ssl);
    if (rc == 1) {
      state_ = State::established;
    } else {
      const int err = SSL_get_error(impl_->ssl, rc);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) fail(openssl_error("DTLS handshake"));
    }
  }
  if (state_ == State::established) drain_app_data(messages);
  // Whatever OpenSSL left of this datagram (a record it dropped) must not prefix the next one.
  if (impl_->rbio) (void)BIO_reset(impl_->rbio);
}

void DtlsClient::drain_app_data(std::vector<std::vector<std::byte>>& messages) {
  std::vector<std::byte> buf(max_record_plaintext);
  // Each SSL_read returns one record; the bound is the datagram itself (it cannot hold more records
  // than bytes), kept explicit.
  for (int guard = 0; guard < 256; ++guard) {
    const int n = SSL_read(impl_->ssl, buf.data(), static_cast<int>(buf.size()));
    if (n > 0) {
      messages.emplace_back(buf.begin(), buf.begin() + n);
      continue;
    }
    const int err = SSL_get_error(impl_->ssl, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
    if (err == SSL_ERROR_ZERO_RETURN) {
      state_ = State::closed;
      error_ = "close_notify from the peer";
      // Answer the close_notify so the peer can free its side at once.
      (void)SSL_shutdown(impl_->ssl);
      ERR_clear_error();
      return;
    }
    fail(openssl_error("DTLS read"));
    return;
  }
}

bool DtlsClient::send(std::span<const std::byte> message) {
  if (state_ != State::established || !impl_->ssl) return false;
  if (message.empty()) return true;
  ERR_clear_error();
  const int n = SSL_write(impl_->ssl, message.data(), static_cast<int>(message.size()));
  if (n == static_cast<int>(message.size())) return true;
  const int err = SSL_get_error(impl_->ssl, n);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return false;  // renegotiation: retransmit later
  fail(openssl_error("DTLS write"));
  return false;
}

std::vector<std::vector<std::byte>> DtlsClient::take_datagrams() {
  std::vector<std::vector<std::byte>> out;
  if (!impl_->wbio) return out;
  const auto pending = BIO_ctrl_pending(impl_->wbio);
  if (pending == 0) return out;
  std::vector<std::byte> bytes(pending);
  const int n = BIO_read(impl_->wbio, bytes.data(), static_cast<int>(bytes.size()));
  if (n <= 0) return out;
  bytes.resize(static_cast<std::size_t>(n));
  // The memory BIO concatenates the records OpenSSL wrote; pack whole records into datagrams of at
  // most link_mtu bytes (OpenSSL already sized each record for that MTU).
  std::size_t pos = 0;
  while (pos + record_header <= bytes.size()) {
    const std::size_t length = bytes::load_be16(bytes.data() + pos + 11);
    const std::size_t end = std::min(bytes.size(), pos + record_header + length);
    if (out.empty() || out.back().size() + (end - pos) > settings_.link_mtu) out.emplace_back();
    out.back().insert(out.back().end(), bytes.begin() + static_cast<std::ptrdiff_t>(pos),
                      bytes.begin() + static_cast<std::ptrdiff_t>(end));
    pos = end;
  }
  return out;
}

std::optional<std::chrono::milliseconds> DtlsClient::retransmit_in() const {
  if (!impl_->ssl || state_ != State::handshake) return std::nullopt;
  timeval tv{};
  if (DTLSv1_get_timeout(impl_->ssl, &tv) != 1) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000);
}

void DtlsClient::on_retransmit_timer() {
  if (!impl_->ssl || state_ != State::handshake) return;
  ERR_clear_error();
  if (DTLSv1_handle_timeout(impl_->ssl) < 0) fail(openssl_error("DTLS handshake retransmissions exhausted"));
}

void DtlsClient::close() {
  if (impl_->ssl && state_ == State::established) {
    (void)SSL_shutdown(impl_->ssl);
    ERR_clear_error();
  }
  state_ = State::closed;
}

void DtlsClient::abandon() {
  impl_->drop_ssl();
  state_ = State::closed;
}

void* DtlsClient::native_handle() const { return impl_->ssl; }

}  // namespace coapgw::gateway
