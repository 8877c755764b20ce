// coapgw::server::StreamTls — the TLS side of coaps+tcp (RFC 8323 over TLS 1.2/1.3): one SSL_CTX
// per worker with the DTLS listener's credentials (dtls.psk: TLS 1.2 PSK suites and TLS 1.3
// external PSK, as libcoap does it; dtls.pki: certificate, and client certificates checked against
// dtls.pki.ca; with dtls.psk.lookup also the registry's cached keys), the identity a handshake
// authenticated, and the re-check of a live connection's
// credentials after a reload. The TLS records themselves are transport::TlsFilter's; this class
// holds no connection.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dtls/credentials.hpp"
#include "dtls/psk_store.hpp"
#include "dtls/registry_cache.hpp"
#include "dtls/settings.hpp"

struct ssl_ctx_st;
struct ssl_st;

namespace coapgw::server {

class StreamTls {
 public:
  // nullptr + error when the certificate, key or CA cannot be used.
  static std::unique_ptr<StreamTls> create(const dtls::ServerSettings& settings, std::string* error);
  ~StreamTls();
  StreamTls(const StreamTls&) = delete;
  StreamTls& operator=(const StreamTls&) = delete;

  ssl_ctx_st* native() const { return ctx_; }
  // Reload: new PSK store and client CA (null trust: keep the current one). Worker thread only.
  void set_credentials(std::shared_ptr<const dtls::PskStore> store, std::shared_ptr<const dtls::TrustStore> trust);
  // dtls.psk.lookup: identities not in the local keys take the registry's cached key (null: none).
  void set_registry(const dtls::RegistryCache* registry) { registry_ = registry; }
  const std::shared_ptr<const dtls::PskStore>& psk_store() const { return psk_; }

  // What a finished handshake authenticated: the PSK identity, else the client certificate's
  // subject CN ("" for a server-certificate-only connection).
  struct Peer {
    std::string identity;
    std::vector<std::byte> psk_key;              // the key the handshake used; empty for certificates
    std::vector<std::vector<std::byte>> certs;   // the client's chain (DER, leaf first); empty for PSK
    bool registry_keyed = false;                 // the key came from the device registry
  };
  static Peer peer_of(ssl_st* ssl);
  // Whether `peer` still stands under the current credentials: its PSK key
  // unchanged (the registry's cached answer deciding for identities the local keys do not know),
  // its certificate chain still verifying.
  bool stands(const Peer& peer) const;

 private:
  StreamTls() = default;
  static unsigned psk_server(ssl_st* ssl, const char* identity, unsigned char* psk, unsigned max_psk_len);

  ssl_ctx_st* ctx_ = nullptr;
  std::shared_ptr<const dtls::PskStore> psk_;
  std::shared_ptr<const dtls::TrustStore> trust_;
  const dtls::RegistryCache* registry_ = nullptr;
};

}  // namespace coapgw::server
