// coapgw-bench DTLS channel — OpenSSL client setup and non-blocking I/O (see dtls_channel.hpp).
#include "dtls_channel.hpp"

#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <cstring>

#include "cid_channel.hpp"
#include "dtls/client_context.hpp"

namespace coapgw::bench {

namespace {

unsigned int psk_client_callback(SSL* ssl, const char* /*hint*/, char* identity,
                                 unsigned int max_identity_len, unsigned char* psk,
                                 unsigned int max_psk_len) {
  auto* context = static_cast<DtlsClientContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (context == nullptr) return 0;
  const auto* own = static_cast<const std::string*>(SSL_get_app_data(ssl));  // --identity-per-device
  auto [id, key] = own != nullptr ? std::pair<std::string, std::string>{*own, context->key()}
                                  : context->next_credentials();  // --identities: taking turns
  if (id.size() + 1 > max_identity_len || key.size() > max_psk_len) return 0;
  std::memcpy(identity, id.c_str(), id.size() + 1);
  std::memcpy(psk, key.data(), key.size());
  return static_cast<unsigned int>(key.size());
}

}  // namespace

std::unique_ptr<DtlsClientContext> DtlsClientContext::create(const std::string& cipher,
                                                             const std::string& identity,
                                                             const std::string& key, bool cid,
                                                             std::string& error, double handshake_timeout_s) {
  std::unique_ptr<DtlsClientContext> context(new DtlsClientContext());
  context->identity_ = identity;
  context->key_ = key;
  context->ctx_ = SSL_CTX_new(DTLS_client_method());
  if (context->ctx_ == nullptr) {
    error = "SSL_CTX_new failed";
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(context->ctx_, DTLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(context->ctx_, DTLS1_2_VERSION);
  if (SSL_CTX_set_cipher_list(context->ctx_, cipher.c_str()) != 1) {
    error = "cipher list refused by OpenSSL: " + cipher;
    return nullptr;
  }
  // Each device is a separate client: no resumption cache, and buffers released when idle so
  // a hundred thousand held sessions fit in memory.
  SSL_CTX_set_session_cache_mode(context->ctx_, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(context->ctx_, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(context->ctx_, SSL_OP_NO_TICKET | SSL_OP_NO_QUERY_MTU);
  SSL_CTX_set_psk_client_callback(context->ctx_, psk_client_callback);
  SSL_CTX_set_app_data(context->ctx_, context.get());
  if (cid) {
    dtls::ClientSettings settings;
    settings.psk_identity = identity;
    settings.psk_key = key;
    settings.ciphers = cipher;
    // The engine gives up an attempt when the bench does (--handshake-timeout), retransmitting
    // its flight 1, 2, 4 ... s apart meanwhile (RFC 6347 4.2.4.1).
    settings.handshake_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(handshake_timeout_s * 1000));
    settings.connection_id = std::vector<std::byte>{};  // the server's CID in our records; plain ones to us
    context->engine_context_ = dtls::ClientContext::create(std::move(settings), &error);
    if (!context->engine_context_) return nullptr;
  }
  return context;
}

DtlsClientContext::~DtlsClientContext() { SSL_CTX_free(ctx_); }

std::pair<std::string, std::string> DtlsClientContext::next_credentials() {
  if (identities_ == 0) return {identity_, key_};
  const std::string n = std::to_string(next_identity_);
  next_identity_ = (next_identity_ + 1) % identities_;
  return {identity_ + "-" + n, key_ + "-" + n};
}

std::unique_ptr<SecureChannel> DtlsChannel::start(DtlsClientContext& context, int fd, const std::string& server,
                                                  std::string identity) {
  if (context.engine_context() != nullptr) return CidChannel::start(*context.engine_context(), fd, server);
  SSL* ssl = SSL_new(context.native());
  if (ssl == nullptr) return nullptr;
  BIO* bio = BIO_new_dgram(fd, BIO_NOCLOSE);
  if (bio == nullptr) {
    SSL_free(ssl);
    return nullptr;
  }
  sockaddr_storage peer{};
  socklen_t peer_len = sizeof peer;
  getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len);
  BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, &peer);
  SSL_set_bio(ssl, bio, bio);
  // Loopback's MTU is 64 KiB; a device-like MTU keeps flights the size real devices send.
  SSL_set_mtu(ssl, 1280);
  SSL_set_connect_state(ssl);
  std::unique_ptr<DtlsChannel> channel(new DtlsChannel(ssl));
  if (!identity.empty()) {
    channel->identity_ = std::move(identity);
    SSL_set_app_data(ssl, &channel->identity_);
  }
  if (channel->continue_handshake() == HandshakeStatus::failed) return nullptr;
  return channel;
}

DtlsChannel::~DtlsChannel() { SSL_free(ssl_); }

HandshakeStatus DtlsChannel::continue_handshake() {
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) return HandshakeStatus::done;
  const int error = SSL_get_error(ssl_, rc);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return HandshakeStatus::in_progress;
  ERR_clear_error();
  return HandshakeStatus::failed;
}

bool DtlsChannel::send(std::span<const std::byte> datagram) {
  ERR_clear_error();
  const int rc = SSL_write(ssl_, datagram.data(), static_cast<int>(datagram.size()));
  if (rc > 0) return true;
  ERR_clear_error();
  return false;
}

ReceiveResult DtlsChannel::receive(std::span<std::byte> buffer) {
  ERR_clear_error();
  const int rc = SSL_read(ssl_, buffer.data(), static_cast<int>(buffer.size()));
  if (rc > 0) return {ReceiveStatus::datagram, static_cast<std::size_t>(rc)};
  const int error = SSL_get_error(ssl_, rc);
  ERR_clear_error();
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return {ReceiveStatus::would_block, 0};
  if (error == SSL_ERROR_ZERO_RETURN) return {ReceiveStatus::closed, 0};
  return {ReceiveStatus::error, 0};
}

void DtlsChannel::on_timer() {
  if (!SSL_is_init_finished(ssl_)) DTLSv1_handle_timeout(ssl_);
}

void DtlsChannel::close() {
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

}  // namespace coapgw::bench
