#include "dtls/context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>

#include "common/openssl_error.hpp"
#include "dtls/prf_provider.hpp"
#include "dtls/record_crypto.hpp"
#include "dtls/ssl_glue.hpp"

namespace coapgw::dtls {

Context::Context(Role role) : role_(role) {}

Context::~Context() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

std::size_t Context::max_plaintext() const {
  // A device session keeps every record within one datagram of the link MTU (IPv6 + UDP, record
  // header, explicit nonce, tag). The client role talks to an upstream over a link that is rarely
  // the constrained one and, as coaps:// always did, takes any CoAP message up to the DTLS record
  // maximum in one record (a datagram beyond the MTU is fragmented by IP).
  if (role_ == Role::client) return 16384;
  return std::clamp<std::size_t>(mtu_ - 48 - 13 - 8 - 16, 512, 16384);
}

std::string Context::check_timing(std::size_t mtu, std::chrono::milliseconds handshake_timeout,
                                  std::chrono::milliseconds retransmit_initial) {
  if (mtu < 256 + 48 || mtu > 65535) return "dtls: mtu must be in [304, 65535]";
  if (handshake_timeout.count() <= 0) return "dtls: handshake_timeout must be > 0";
  if (retransmit_initial.count() <= 0 || retransmit_initial.count() > 60000) {
    return "dtls: retransmit_initial must be in (0, 60s]";
  }
  return {};
}

std::string Context::init(std::size_t mtu, std::chrono::milliseconds handshake_timeout,
                          std::chrono::milliseconds retransmit_initial, const std::string& ciphers) {
  if (auto why = check_timing(mtu, handshake_timeout, retransmit_initial); !why.empty()) return why;
  mtu_ = mtu;
  handshake_timeout_ = handshake_timeout;
  retransmit_initial_ = retransmit_initial;
  // libssl's PRF calls (master secret, key block, Finished) go to the coapgw-prf provider.
  SSL_CTX* ctx = SSL_CTX_new_ex(nullptr, detail::prf_provider_query(),
                                role_ == Role::server ? DTLS_server_method() : DTLS_client_method());
  if (ctx == nullptr) return openssl_error("dtls: SSL_CTX_new");
  ctx_ = ctx;
  SSL_CTX_set_app_data(ctx, this);
  SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (role_ == Role::server) SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_read_ahead(ctx, 1);
  // One record must fit one datagram; this also keeps OpenSSL's write buffer small.
  SSL_CTX_set_max_send_fragment(ctx, max_plaintext());

  if (SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
    return openssl_error("dtls: no usable cipher in '" + ciphers + "'");
  }
  // Established sessions are protected by the lean AEAD record layer, which
  // knows only AEAD suites: a list that could negotiate CBC (or ARIA,
  // Camellia, NULL) is refused rather than silently narrowed.
  if (const STACK_OF(SSL_CIPHER)* enabled = SSL_CTX_get_ciphers(ctx); enabled != nullptr) {
    for (int i = 0; i < sk_SSL_CIPHER_num(enabled); ++i) {
      const SSL_CIPHER* c = sk_SSL_CIPHER_value(enabled, i);
      const std::uint16_t id = SSL_CIPHER_get_protocol_id(c);
      if ((id >> 8) == 0x13) continue;  // TLS 1.3 suites: never negotiated in DTLS 1.2
      if (detail::find_suite(id) == nullptr) {
        return "dtls: cipher suite " + std::string(SSL_CIPHER_get_name(c)) + " in '" + ciphers +
               "' is not supported: DTLS sessions need an AEAD suite (AES-CCM, AES-CCM8, AES-GCM, "
               "ChaCha20-Poly1305), e.g. PSK-AES128-CCM8";
      }
    }
  }
  SSL_CTX_set_msg_callback(ctx, detail::Callbacks::message);
  SSL_CTX_set_info_callback(ctx, detail::Callbacks::info);
  if (detail::datagram_bio_method() == nullptr) return openssl_error("dtls: BIO method");
  read_buffer_ = std::make_unique<std::byte[]>(read_buffer_size);
  crypto_ = detail::RecordCrypto::create();
  if (crypto_ == nullptr) return openssl_error("dtls: AEAD ciphers unavailable");
  return {};
}

}  // namespace coapgw::dtls
