// The "coapgw-prf" provider (see prf_provider.hpp): OSSL_OP_KDF "TLS1-PRF" only.
#include "dtls/prf_provider.hpp"

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <strings.h>

#include "dtls/prf.hpp"

namespace coapgw::dtls::detail {
namespace {

constexpr const char* provider_name = "coapgw-prf";
// What OpenSSL's own TLS1-PRF accepts for secret and concatenated seeds (TLS1_PRF_MAXBUF).
constexpr std::size_t max_input = 1024;

// Per derive call; libssl makes a fresh one for each PRF it computes. The buffers are not zeroed
// up front (2 KB per call): only their first secret_size and seed_size bytes are ever read.
struct PrfContext {
  enum class Digest : std::uint8_t { none, sha256, sha384, other };
  Digest digest = Digest::none;
  std::string digest_name;  // `other`: handed to OpenSSL's implementation
  std::size_t secret_size = 0;
  bool secret_set = false;
  std::size_t seed_size = 0;
  std::array<std::byte, max_input> secret;
  std::array<std::byte, max_input> seed;

  void reset() {
    OPENSSL_cleanse(secret.data(), secret_size);
    OPENSSL_cleanse(seed.data(), seed_size);
    digest = Digest::none;
    digest_name.clear();
    secret_size = 0;
    secret_set = false;
    seed_size = 0;
  }
};

PrfContext::Digest digest_of(const char* name) {
  for (const char* n : {"SHA256", "SHA2-256", "SHA-256"}) {
    if (strcasecmp(name, n) == 0) return PrfContext::Digest::sha256;
  }
  for (const char* n : {"SHA384", "SHA2-384", "SHA-384"}) {
    if (strcasecmp(name, n) == 0) return PrfContext::Digest::sha384;
  }
  return PrfContext::Digest::other;
}

// malloc and placement new, not operator new: nothing here may throw into OpenSSL, and the
// context is released the way it was taken whatever operator new/delete the program replaces.
void* prf_new(void*) {
  void* memory = std::malloc(sizeof(PrfContext));
  return memory != nullptr ? new (memory) PrfContext : nullptr;
}

void prf_free(void* vctx) {
  auto* ctx = static_cast<PrfContext*>(vctx);
  if (ctx == nullptr) return;
  ctx->reset();
  ctx->~PrfContext();
  std::free(ctx);
}

void prf_reset(void* vctx) { static_cast<PrfContext*>(vctx)->reset(); }

int prf_set_params(void* vctx, const OSSL_PARAM params[]) {
  auto* ctx = static_cast<PrfContext*>(vctx);
  if (params == nullptr) return 1;
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_DIGEST); p != nullptr) {
    const char* name = nullptr;
    if (OSSL_PARAM_get_utf8_string_ptr(p, &name) != 1 || name == nullptr) return 0;
    ctx->digest = digest_of(name);
    try {
      ctx->digest_name = name;  // no exception may reach OpenSSL's C code
    } catch (...) {
      return 0;
    }
  }
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_SECRET); p != nullptr) {
    if (p->data_type != OSSL_PARAM_OCTET_STRING || p->data_size > max_input) return 0;
    OPENSSL_cleanse(ctx->secret.data(), ctx->secret_size);
    if (p->data_size != 0) std::memcpy(ctx->secret.data(), p->data, p->data_size);
    ctx->secret_size = p->data_size;
    ctx->secret_set = true;
  }
  // As in OpenSSL's TLS1-PRF, every seed parameter is appended (libssl passes label and seeds apart).
  for (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_SEED); p != nullptr;
       p = OSSL_PARAM_locate_const(p + 1, OSSL_KDF_PARAM_SEED)) {
    if (p->data_type != OSSL_PARAM_OCTET_STRING) return 0;
    if (p->data_size == 0 || p->data == nullptr) continue;
    if (p->data_size > max_input - ctx->seed_size) return 0;
    std::memcpy(ctx->seed.data() + ctx->seed_size, p->data, p->data_size);
    ctx->seed_size += p->data_size;
  }
  return 1;
}

// Digests we do not compute (MD5-SHA1 of TLS 1.0/1.1, for one): any other provider's TLS1-PRF,
// not only the default provider's (a FIPS configuration loads "fips" and "base", not "default").
int derive_elsewhere(const PrfContext& ctx, unsigned char* key, std::size_t keylen) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_TLS1_PRF, "provider!=coapgw-prf");
  EVP_KDF_CTX* kctx = kdf != nullptr ? EVP_KDF_CTX_new(kdf) : nullptr;
  EVP_KDF_free(kdf);
  if (kctx == nullptr) return 0;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(ctx.digest_name.c_str()), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, const_cast<std::byte*>(ctx.secret.data()),
                                        ctx.secret_size),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, const_cast<std::byte*>(ctx.seed.data()),
                                        ctx.seed_size),
      OSSL_PARAM_construct_end()};
  const int ok = EVP_KDF_derive(kctx, key, keylen, params);
  EVP_KDF_CTX_free(kctx);
  return ok;
}

int prf_derive(void* vctx, unsigned char* key, std::size_t keylen, const OSSL_PARAM params[]) {
  auto* ctx = static_cast<PrfContext*>(vctx);
  if (prf_set_params(ctx, params) != 1) return 0;
  // Like OpenSSL's: a digest, a secret and a seed are required.
  if (ctx->digest == PrfContext::Digest::none || !ctx->secret_set || ctx->seed_size == 0 || keylen == 0) return 0;
  if (ctx->digest == PrfContext::Digest::other) return derive_elsewhere(*ctx, key, keylen);
  tls12_p_hash(ctx->digest == PrfContext::Digest::sha256 ? PrfHash::sha256 : PrfHash::sha384,
               std::span<const std::byte>(ctx->secret.data(), ctx->secret_size),
               std::span<const std::byte>(ctx->seed.data(), ctx->seed_size),
               std::span<std::byte>(reinterpret_cast<std::byte*>(key), keylen));
  return 1;
}

const OSSL_PARAM* prf_settable(void*, void*) {
  static const OSSL_PARAM settable[] = {
      OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, nullptr, 0),
      OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, nullptr, 0),
      OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SECRET, nullptr, 0),
      OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SEED, nullptr, 0),
      OSSL_PARAM_END};
  return settable;
}

int prf_get_params(void*, OSSL_PARAM params[]) {
  if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_KDF_PARAM_SIZE); p != nullptr) {
    return OSSL_PARAM_set_size_t(p, SIZE_MAX);
  }
  return -2;
}

const OSSL_PARAM* prf_gettable(void*, void*) {
  static const OSSL_PARAM gettable[] = {OSSL_PARAM_size_t(OSSL_KDF_PARAM_SIZE, nullptr), OSSL_PARAM_END};
  return gettable;
}

using Fn = void (*)();
template <typename F>
Fn fn(F* f) {
  return reinterpret_cast<Fn>(f);
}

const OSSL_DISPATCH prf_functions[] = {
    {OSSL_FUNC_KDF_NEWCTX, fn(prf_new)},
    {OSSL_FUNC_KDF_FREECTX, fn(prf_free)},
    {OSSL_FUNC_KDF_RESET, fn(prf_reset)},
    {OSSL_FUNC_KDF_DERIVE, fn(prf_derive)},
    {OSSL_FUNC_KDF_SETTABLE_CTX_PARAMS, fn(prf_settable)},
    {OSSL_FUNC_KDF_SET_CTX_PARAMS, fn(prf_set_params)},
    {OSSL_FUNC_KDF_GETTABLE_CTX_PARAMS, fn(prf_gettable)},
    {OSSL_FUNC_KDF_GET_CTX_PARAMS, fn(prf_get_params)},
    {0, nullptr}};

const OSSL_ALGORITHM kdfs[] = {
    {"TLS1-PRF", "provider=coapgw-prf", prf_functions, "TLS 1.2 PRF, pre-keyed HMAC"},
    {nullptr, nullptr, nullptr, nullptr}};

const OSSL_ALGORITHM* query(void*, int operation_id, int* no_cache) {
  *no_cache = 0;
  return operation_id == OSSL_OP_KDF ? kdfs : nullptr;
}

const OSSL_DISPATCH provider_functions[] = {{OSSL_FUNC_PROVIDER_QUERY_OPERATION, fn(query)}, {0, nullptr}};

int provider_init(const OSSL_CORE_HANDLE*, const OSSL_DISPATCH*, const OSSL_DISPATCH** out, void** provctx) {
  *out = provider_functions;
  *provctx = nullptr;
  return 1;
}

}  // namespace

// Loaded once for the life of the process; held here so that it stays reachable (LeakSanitizer).
static OSSL_PROVIDER* loaded_provider = nullptr;

const char* prf_provider_query() {
  static const char* query = [] {
    // try_load with retain_fallbacks: OpenSSL still loads its default provider on demand.
    if (OSSL_PROVIDER_add_builtin(nullptr, provider_name, provider_init) != 1 ||
        (loaded_provider = OSSL_PROVIDER_try_load(nullptr, provider_name, 1)) == nullptr) {
      ERR_clear_error();
      return static_cast<const char*>(nullptr);
    }
    return "?provider=coapgw-prf";
  }();
  return query;
}

}  // namespace coapgw::dtls::detail
