#include "dtls/credentials.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

namespace coapgw::dtls {
namespace {

X509* parse_der(const std::vector<std::byte>& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  return d2i_X509(nullptr, &p, static_cast<long>(der.size()));
}

}  // namespace

std::shared_ptr<const TrustStore> TrustStore::load(const std::string& ca_file, std::string* error) {
  auto fail = [&](std::string why) -> std::shared_ptr<const TrustStore> {
    ERR_clear_error();
    if (error != nullptr) *error = std::move(why);
    return nullptr;
  };
  std::shared_ptr<TrustStore> trust(new TrustStore);
  trust->file_ = ca_file;
  trust->store_ = X509_STORE_new();
  if (trust->store_ == nullptr) return fail("cannot allocate a certificate store");
  if (X509_STORE_load_file(trust->store_, ca_file.c_str()) != 1) return fail("cannot load CA " + ca_file);
  trust->names_ = SSL_load_client_CA_file(ca_file.c_str());
  if (trust->names_ == nullptr) return fail("no CA certificate in " + ca_file);
  return trust;
}

TrustStore::~TrustStore() {
  if (names_ != nullptr) sk_X509_NAME_pop_free(names_, X509_NAME_free);
  if (store_ != nullptr) X509_STORE_free(store_);
}

stack_st_X509_NAME* TrustStore::ca_names() const { return SSL_dup_CA_list(names_); }

bool TrustStore::verifies(std::span<const std::vector<std::byte>> chain, std::int64_t at) const {
  if (chain.empty()) return false;
  X509* leaf = parse_der(chain.front());
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  bool ok = leaf != nullptr && untrusted != nullptr && ctx != nullptr;
  for (std::size_t i = 1; ok && i < chain.size(); ++i) {
    X509* c = parse_der(chain[i]);
    ok = c != nullptr && sk_X509_push(untrusted, c) > 0;
    if (!ok && c != nullptr) X509_free(c);
  }
  // The same check the handshake made (purpose sslclient), at the current time.
  ok = ok && X509_STORE_CTX_init(ctx, store_, leaf, untrusted) == 1 &&
       X509_STORE_CTX_set_default(ctx, "ssl_client") == 1;
  if (ok && at != 0) X509_STORE_CTX_set_time(ctx, 0, static_cast<time_t>(at));
  ok = ok && X509_verify_cert(ctx) == 1;
  if (ctx != nullptr) X509_STORE_CTX_free(ctx);
  if (untrusted != nullptr) sk_X509_pop_free(untrusted, X509_free);
  if (leaf != nullptr) X509_free(leaf);
  ERR_clear_error();
  return ok;
}

std::string_view to_string(Standing standing) {
  switch (standing) {
    case Standing::valid: return "valid";
    case Standing::identity_unknown: return "identity_unknown";
    case Standing::key_changed: return "key_changed";
    case Standing::certificate_rejected: return "certificate_rejected";
  }
  return "unknown";
}

Standing check(const Credentials& c, const PskStore* psk, const TrustStore* trust) {
  if (!c.psk_key.empty()) {
    const std::optional<std::string_view> key = psk != nullptr ? psk->find(c.identity) : std::nullopt;
    if (!key) return Standing::identity_unknown;
    if (key->size() != c.psk_key.size() || CRYPTO_memcmp(key->data(), c.psk_key.data(), key->size()) != 0)
      return Standing::key_changed;
    return Standing::valid;
  }
  if (c.peer_certs.empty()) {
    // A certificate session without a client certificate is fine only while none is required; one
    // that names an identity must have had a certificate we can no longer see (an old persist file).
    return trust == nullptr && c.identity.empty() ? Standing::valid : Standing::certificate_rejected;
  }
  if (trust == nullptr || !trust->verifies(c.peer_certs)) return Standing::certificate_rejected;
  return Standing::valid;
}

}  // namespace coapgw::dtls
