// RFC 5077 session tickets on the server role's SSL_CTX. OpenSSL builds and parses the ticket (the
// session state, AES-256-CBC + HMAC-SHA256 as RFC 5077 4 recommends); we supply the keys
// (TicketKeys) and what the ticket must prove on its way back: the credentials it was issued for.
// A ticket carries its kind and, for PSK sessions, the identity and a SHA-256 of the key; it
// resumes only while that identity still has that key (a reload that removed or changed it sends
// the device through a full handshake, which then fails like any other with unknown credentials),
// or while a client certificate still chains to the configured CA.
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "dtls/credentials.hpp"
#include "dtls/engine.hpp"
#include "dtls/server_context.hpp"
#include "dtls/ssl_glue.hpp"
#include "dtls/ticket_keys.hpp"

namespace coapgw::dtls::detail {
namespace {

enum Kind : unsigned char { psk_kind = 'P', certificate_kind = 'C', anonymous_kind = 'A' };
constexpr std::size_t digest_size = 32;

ServerContext* server_context_of(const SSL* ssl) {
  auto* context = static_cast<Context*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  return context != nullptr && context->role() == Context::Role::server ? static_cast<ServerContext*>(context)
                                                                          : nullptr;
}

bool key_digest(std::string_view key, unsigned char* out) {
  unsigned int length = 0;
  return EVP_Digest(key.data(), key.size(), out, &length, EVP_sha256(), nullptr) == 1 && length == digest_size;
}

std::vector<std::byte> to_der(X509* cert) {
  const int length = cert != nullptr ? i2d_X509(cert, nullptr) : 0;
  if (length <= 0) return {};
  std::vector<std::byte> der(static_cast<std::size_t>(length));
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_X509(cert, &p) != length) return {};
  return der;
}

}  // namespace

int Callbacks::ticket_key(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                          EVP_MAC_CTX* mac, int encrypt) {
  ServerContext* context = server_context_of(ssl);
  if (context == nullptr || !context->tickets_) return -1;
  const std::int64_t now = context->settings_.tickets.wall_clock();
  const TicketKey* key = nullptr;
  bool renew = false;
  if (encrypt == 1) {
    key = context->tickets_->for_new_ticket(now);
    if (key == nullptr || RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    std::memcpy(name, key->name.data(), key->name.size());
  } else {
    const auto found = context->tickets_->find(std::span<const std::uint8_t, ticket_key_name_size>(name, 16), now);
    if (found.key == nullptr) return 0;  // unknown or expired key: full handshake, new ticket
    key = found.key;
    renew = found.renew;
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<std::uint8_t*>(key->hmac.data()),
                                        key->hmac.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  const int init = encrypt == 1 ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes.data(), iv)
                                : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes.data(), iv);
  if (init != 1 || EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  return renew ? 2 : 1;
}

int Callbacks::ticket_generated(SSL* ssl, void*) {
  auto* engine = static_cast<Engine*>(SSL_get_app_data(ssl));
  SSL_SESSION* session = SSL_get_session(ssl);
  if (engine == nullptr || session == nullptr) return 0;
  std::vector<unsigned char> data;
  if (!engine->psk_key_.empty()) {
    data.resize(1 + digest_size);
    data[0] = psk_kind;
    if (!key_digest(engine->psk_key_, data.data() + 1)) return 0;
    data.insert(data.end(), engine->identity_.begin(), engine->identity_.end());
  } else {
    data.push_back(SSL_get0_peer_certificate(ssl) != nullptr ? certificate_kind : anonymous_kind);
  }
  const int ok = SSL_SESSION_set1_ticket_appdata(session, data.data(), data.size());
  OPENSSL_cleanse(data.data(), data.size());
  return ok;
}

SSL_TICKET_RETURN Callbacks::ticket_decrypted(SSL* ssl, SSL_SESSION* session, const unsigned char*, size_t,
                                              SSL_TICKET_STATUS status, void*) {
  switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW: break;
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT: return SSL_TICKET_RETURN_IGNORE_RENEW;
    default: return SSL_TICKET_RETURN_ABORT;
  }
  const SSL_TICKET_RETURN use = status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
  auto* engine = static_cast<Engine*>(SSL_get_app_data(ssl));
  ServerContext* context = server_context_of(ssl);
  void* raw = nullptr;
  size_t length = 0;
  if (engine == nullptr || context == nullptr || SSL_SESSION_get0_ticket_appdata(session, &raw, &length) != 1 ||
      length == 0) {
    return SSL_TICKET_RETURN_IGNORE_RENEW;
  }
  const auto* data = static_cast<const unsigned char*>(raw);
  Standing standing = Standing::valid;
  if (data[0] == psk_kind && length >= 1 + digest_size) {
    const std::string_view identity(reinterpret_cast<const char*>(data + 1 + digest_size), length - 1 - digest_size);
    const std::optional<std::string_view> key = context->psk_ ? context->psk_->find(identity) : std::nullopt;
    unsigned char now_digest[digest_size];
    if (!key || key->empty()) {
      standing = Standing::identity_unknown;
    } else if (!key_digest(*key, now_digest) || CRYPTO_memcmp(now_digest, data + 1, digest_size) != 0) {
      standing = Standing::key_changed;
    } else {
      engine->psk_key_ = *key;  // what the session is checked against from now on, as after a full handshake
    }
    engine->identity_.assign(identity);
  } else if (data[0] == certificate_kind) {
    const std::vector<std::vector<std::byte>> chain{to_der(SSL_SESSION_get0_peer(session))};
    if (!context->trust_ || chain.front().empty() || !context->trust_->verifies(chain)) {
      standing = Standing::certificate_rejected;
    }
  } else if (data[0] != anonymous_kind || context->trust_) {
    // Unknown kind, or a client that never showed a certificate to a server that now asks for one
    // (a gateway sharing the key file with one that did not): no shortcut past authentication.
    return SSL_TICKET_RETURN_IGNORE_RENEW;
  }
  if (standing != Standing::valid) {
    log::debug("dtls: ticket from " + engine->peer().to_string() + " not resumed (" +
               std::string(to_string(standing)) + "), full handshake");
    return SSL_TICKET_RETURN_IGNORE_RENEW;
  }
  return use;
}

bool Callbacks::enable_tickets(SSL_CTX* ctx, long lifetime_seconds) {
  SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
  // A session resumed on a context that verifies peers needs a session id context (else OpenSSL
  // ends the handshake); every context of ours serves the same devices, so one constant.
  static const unsigned char id_context[] = "coapgw-dtls";
  if (SSL_CTX_set_session_id_context(ctx, id_context, sizeof id_context - 1) != 1) return false;
  SSL_CTX_set_timeout(ctx, lifetime_seconds);  // the lifetime hint, and how old a resumed session may be
  return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key) == 1 &&
         SSL_CTX_set_session_ticket_cb(ctx, ticket_generated, ticket_decrypted, nullptr) == 1;
}

}  // namespace coapgw::dtls::detail
