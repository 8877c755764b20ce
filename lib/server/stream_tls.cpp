// The SSL_CTX of coaps+tcp; see stream_tls.hpp.
#include "server/stream_tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <cstring>
#include <optional>
#include <string_view>

#include "common/log.hpp"

namespace coapgw::server {

namespace {

// TLS 1.2 suites: AEAD only, PSK ones (what libcoap and GnuTLS offer with a PSK) and certificate
// ones. TLS 1.3 uses OpenSSL's default suites; its external PSK goes through the same callback
// with TLS_AES_128_GCM_SHA256.
constexpr char psk_suites[] =
    "PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:PSK-CHACHA20-POLY1305:PSK-AES128-CCM:PSK-AES128-CCM8:"
    "ECDHE-PSK-CHACHA20-POLY1305";
constexpr char certificate_suites[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-CCM8";

int context_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// What the PSK callback accepted, per connection (SSL_get_psk_identity is empty under TLS 1.3).
void free_peer(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<StreamTls::Peer*>(ptr); }
int peer_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_peer);
  return index;
}

std::string openssl_error(const std::string& what) {
  std::array<char, 256> text{};
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return what;
  ERR_error_string_n(e, text.data(), text.size());
  return what + ": " + text.data();
}

std::vector<std::byte> der_of(X509* cert) {
  std::vector<std::byte> out;
  const int n = i2d_X509(cert, nullptr);
  if (n <= 0 || static_cast<std::size_t>(n) > dtls::max_peer_cert_size) return out;
  out.resize(static_cast<std::size_t>(n));
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  i2d_X509(cert, &p);
  return out;
}

}  // namespace

std::unique_ptr<StreamTls> StreamTls::create(const dtls::ServerSettings& settings, std::string* error) {
  auto fail = [&](std::string why) -> std::unique_ptr<StreamTls> {
    if (error) *error = std::move(why);
    return nullptr;
  };
  std::unique_ptr<StreamTls> tls(new StreamTls);
  tls->ctx_ = SSL_CTX_new(TLS_server_method());
  if (tls->ctx_ == nullptr) return fail(openssl_error("tls: SSL_CTX_new"));
  SSL_CTX* ctx = tls->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_ex_data(ctx, context_index(), tls.get());
  // Each connection is one SSL over memory BIOs; nothing to resume across connections yet.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);  // idle connections keep no record buffers
  const bool cert = !settings.cert_file.empty();
  const bool psk = !cert || (settings.psk != nullptr && !settings.psk->empty());
  std::string suites = settings.ciphers;
  if (suites.empty()) {
    if (psk) suites = psk_suites;
    if (cert) suites += std::string(suites.empty() ? "" : ":") + certificate_suites;
  }
  if (SSL_CTX_set_cipher_list(ctx, suites.c_str()) != 1) return fail(openssl_error("tls: no usable cipher in " + suites));
  tls->psk_ = settings.psk;
  if (psk) {
    SSL_CTX_set_psk_server_callback(ctx, &StreamTls::psk_server);
    if (!settings.psk_hint.empty() && SSL_CTX_use_psk_identity_hint(ctx, settings.psk_hint.c_str()) != 1)
      return fail(openssl_error("tls: bad psk hint"));
  }
  if (cert) {
    if (SSL_CTX_use_certificate_chain_file(ctx, settings.cert_file.c_str()) != 1)
      return fail(openssl_error("tls: cannot load certificate " + settings.cert_file));
    if (SSL_CTX_use_PrivateKey_file(ctx, settings.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      return fail(openssl_error("tls: cannot load private key " + settings.key_file));
    if (SSL_CTX_check_private_key(ctx) != 1) return fail(openssl_error("tls: private key does not match certificate"));
  }
  if (!settings.ca_file.empty()) {
    auto trust = settings.trust;
    std::string why;
    if (!trust) trust = dtls::TrustStore::load(settings.ca_file, &why);
    if (!trust) return fail("tls: " + why);
    if (SSL_CTX_set1_verify_cert_store(ctx, trust->native()) != 1)
      return fail(openssl_error("tls: cannot use CA " + settings.ca_file));
    if (STACK_OF(X509_NAME)* names = trust->ca_names(); names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    tls->trust_ = std::move(trust);
  }
  return tls;
}

StreamTls::~StreamTls() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

void StreamTls::set_credentials(std::shared_ptr<const dtls::PskStore> store,
                                std::shared_ptr<const dtls::TrustStore> trust) {
  psk_ = std::move(store);
  if (!trust || trust == trust_) return;
  if (SSL_CTX_set1_verify_cert_store(ctx_, trust->native()) == 1) trust_ = std::move(trust);
  ERR_clear_error();
}

unsigned StreamTls::psk_server(ssl_st* ssl, const char* identity, unsigned char* psk, unsigned max_psk_len) {
  auto* self = static_cast<StreamTls*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
  if (self == nullptr || identity == nullptr) return 0;
  std::optional<std::string_view> key = self->psk_ ? self->psk_->find(identity) : std::nullopt;
  const bool from_registry = !key && self->registry_ != nullptr;
  if (from_registry) {
    // dtls.psk.lookup: the registry's answer, fetched while the connection's bytes were held.
    const dtls::RegistryEntry* entry = self->registry_->find(identity);
    if (entry != nullptr && entry->usable()) key = std::string_view(entry->key.data(), entry->key.size());
  }
  if (!key || key->empty() || key->size() > max_psk_len) {
    log::debug(std::string("tls: unknown PSK identity '") + identity + "'");
    return 0;
  }
  std::memcpy(psk, key->data(), key->size());
  auto* peer = static_cast<Peer*>(SSL_get_ex_data(ssl, peer_index()));
  if (peer == nullptr) {
    peer = new Peer;
    if (SSL_set_ex_data(ssl, peer_index(), peer) != 1) {
      delete peer;
      return 0;
    }
  }
  peer->identity = identity;
  peer->registry_keyed = from_registry;
  const auto* bytes = reinterpret_cast<const std::byte*>(key->data());
  peer->psk_key.assign(bytes, bytes + key->size());
  return static_cast<unsigned>(key->size());
}

StreamTls::Peer StreamTls::peer_of(ssl_st* ssl) {
  if (const auto* psk = static_cast<const Peer*>(SSL_get_ex_data(ssl, peer_index())); psk != nullptr) return *psk;
  Peer peer;
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return peer;
  std::array<char, 256> cn{};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn.data(), static_cast<int>(cn.size())) > 0)
    peer.identity = cn.data();
  peer.certs.push_back(der_of(leaf));
  // The server side's peer chain leaves the leaf out.
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl)) {
    for (int i = 0; i < sk_X509_num(chain) && peer.certs.size() < dtls::max_peer_certs; ++i)
      peer.certs.push_back(der_of(sk_X509_value(chain, i)));
  }
  return peer;
}

bool StreamTls::stands(const Peer& peer) const {
  dtls::Credentials c;
  c.identity = peer.identity;
  c.psk_key = peer.psk_key;
  c.peer_certs = peer.certs;
  return dtls::check_with_registry(c, psk_.get(), trust_.get(), registry_, peer.registry_keyed) ==
         dtls::Standing::valid;
}

}  // namespace coapgw::server
