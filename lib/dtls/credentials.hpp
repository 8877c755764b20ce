// coapgw::dtls credentials check — does a session's authentication still stand under the current
// configuration? Used wherever a session could outlive the credentials it was made with: a session
// restored from the persist file, the sessions (live, idle, restored-but-unclaimed, handshaking)
// when a reload swaps the PSK store or the client CA.
//
// TrustStore is the client CA (dtls.pki.ca) loaded once, off the worker threads, as an immutable
// X509_STORE shared by every worker: new handshakes verify against it and old sessions are
// re-verified against it (X509_verify_cert, current time, purpose sslclient), so a certificate that
// no longer chains to the CA, or that has expired, ends its session. OpenSSL stays in the .cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dtls/psk_store.hpp"

struct x509_store_st;
struct stack_st_X509_NAME;

namespace coapgw::dtls {

class TrustStore {
 public:
  // nullptr + error when the file cannot be read or holds no certificate.
  static std::shared_ptr<const TrustStore> load(const std::string& ca_file, std::string* error);
  ~TrustStore();
  TrustStore(const TrustStore&) = delete;
  TrustStore& operator=(const TrustStore&) = delete;

  // `chain` is DER, the peer's own certificate first. True when it chains to this CA at `at`
  // (seconds since the epoch; 0 = now), so an expired certificate does not verify.
  bool verifies(std::span<const std::vector<std::byte>> chain, std::int64_t at = 0) const;
  x509_store_st* native() const { return store_; }
  // A fresh copy of the CA names for a CertificateRequest (the caller owns it).
  stack_st_X509_NAME* ca_names() const;
  const std::string& file() const { return file_; }

 private:
  TrustStore() = default;
  x509_store_st* store_ = nullptr;
  stack_st_X509_NAME* names_ = nullptr;
  std::string file_;
};

// What a session was authenticated with.
struct Credentials {
  std::string_view identity;
  std::span<const std::byte> psk_key;                  // empty for certificate sessions
  std::span<const std::vector<std::byte>> peer_certs;  // DER, leaf first; empty for PSK sessions
};

enum class Standing : std::uint8_t {
  valid,
  identity_unknown,       // the PSK identity is no longer in the store
  key_changed,            // the PSK identity has another key now
  certificate_rejected,   // no longer chains to the configured CA, expired, or no CA vouches for it
};
std::string_view to_string(Standing standing);

// `psk` and `trust` are the current configuration's (null: none configured).
Standing check(const Credentials& credentials, const PskStore* psk, const TrustStore* trust);

// Bounds on a peer certificate chain kept per session (and in the persist file).
inline constexpr std::size_t max_peer_certs = 8;
inline constexpr std::size_t max_peer_cert_size = 16 * 1024;

}  // namespace coapgw::dtls
