// coapgw::dtls::ServerContext — one per worker thread: the SSL_CTX, the
// cookie secrets, and the stateless answer to ClientHellos from peers that
// have no session yet.
//
// A ClientHello without a valid cookie is answered with a HelloVerifyRequest
// built here from the datagram alone (no OpenSSL object, nothing kept per
// peer). One with a valid cookie goes through DTLSv1_listen on a reusable
// listener SSL object, which then becomes the new Engine's SSL object; the SSL object of a
// handshake that completed comes back cleared (recycle) to serve a later one.
// Not thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "dtls/context.hpp"
#include "dtls/engine.hpp"
#include "dtls/output.hpp"
#include "dtls/prf.hpp"
#include "dtls/psk_store.hpp"
#include "dtls/settings.hpp"
#include "dtls/wire.hpp"

struct ssl_st;
struct ssl_ctx_st;
union bio_addr_st;

namespace coapgw::dtls {

class TicketKeys;
class RegistryCache;
namespace detail {
struct HandshakeState;
}  // namespace detail

class ServerContext final : public Context {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  // nullptr + error on bad cert/key/ca/ciphers/settings. A cipher list that
  // allows a suite the lean record layer cannot protect (anything but the
  // AES-GCM, AES-CCM(_8) and ChaCha20-Poly1305 suites) is an error too.
  static std::unique_ptr<ServerContext> create(const ServerSettings& settings, std::string* error);
  ~ServerContext() override;

  // Reload: handshakes that look a key up from now on use the new store.
  void set_psk_store(std::shared_ptr<const PskStore> store);
  // Reload: the PSK store and the client CA (null: keep the current CA; ignored when this context
  // asks for no client certificate). Handshakes from now on use them; credentials_generation()
  // moves on, so handshakes that began before can be told apart.
  void set_credentials(std::shared_ptr<const PskStore> store, std::shared_ptr<const TrustStore> trust);
  std::uint64_t credentials_generation() const { return generation_; }
  // The client CA sessions are checked against; null when no client certificate is asked for.
  const TrustStore* trust() const { return trust_.get(); }

  // busy: the ClientHello carried a valid cookie but the caller has no handshake slot (`busy` was
  // set): a fresh HelloVerifyRequest is in `out` and no SSL object was made. The device answers it at
  // once with its ClientHello and restarts its retransmission timer, so it keeps retrying every
  // second or so instead of backing off for tens of seconds and giving up (issue 17).
  enum class HelloVerdict : std::uint8_t { hello_verify_sent, accepted, not_client_hello, malformed, bad_cookie, busy };
  struct HelloResult {
    HelloVerdict verdict;
    std::unique_ptr<Engine> engine;  // only when accepted
  };
  HelloResult on_hello(const Address& peer, std::span<const std::byte> datagram, Output& out,
                       time_point now, bool busy = false);
  void rotate_cookie_secret_if_due(time_point now);

  const ServerSettings& settings() const { return settings_; }

  // RFC 9146: fills a CID of settings().connection_id.length bytes for a new session; false = none
  // free (the session goes without a CID). The default writes node_id and random bytes; the worker
  // installs one that also keeps CIDs unique among its live sessions.
  using CidIssuer = std::function<bool(std::span<std::byte> cid)>;
  void set_cid_issuer(CidIssuer issuer) { cid_issuer_ = std::move(issuer); }
  bool issue_cid(std::span<std::byte> cid) const;
  // node_id followed by random bytes (OpenSSL's RAND_bytes): the default issuer's CID.
  bool random_cid(std::span<std::byte> cid) const;
  const std::shared_ptr<const PskStore>& psk_store() const { return psk_; }
  // dtls.psk.lookup: identities not in the PSK store are looked up here too (null: none). The
  // cache is the worker's and outlives this context's handshakes.
  void set_registry(const RegistryCache* cache) { registry_ = cache; }
  const RegistryCache* registry() const { return registry_; }

  static constexpr std::size_t cookie_size = 32;

 private:
  friend class Engine;
  friend struct detail::Callbacks;
  friend class detail::SslRecordLayer;

  ServerContext();
  using Cookie = std::array<std::uint8_t, cookie_size>;
  Cookie make_cookie(const detail::Hmac& key, const Address& peer, const wire::ClientHello& hello) const;
  void key_cookies();  // cookie_key_ and previous_cookie_key_ from the two secrets
  bool cookie_valid(const Address& peer, const wire::ClientHello& hello) const;
  void write_hello_verify_request(const wire::ClientHello& hello, const Cookie& cookie, Output& out) const;
  bool ensure_listener();
  // A handshake that completed hands its SSL object back (Engine::switch_to_lean): cleared at once
  // (SSL_clear: keys, session, buffers), it waits in spare_ to become a listener, saving the next
  // handshake an SSL_new and this one an SSL_free. Only when no reload came in between
  // (`generation`): an SSL object keeps the verify store it was created with. Beyond
  // max_spare_ssl it is freed.
  void recycle(detail::HandshakeState& handshake, std::uint64_t generation);

  ServerSettings settings_;
  std::shared_ptr<const PskStore> psk_;
  const RegistryCache* registry_ = nullptr;
  std::shared_ptr<const TrustStore> trust_;
  std::uint64_t generation_ = 0;
  ssl_st* listener_ = nullptr;  // fresh SSL object waiting for the next cookie-bearing ClientHello
  // Cleared SSL objects of completed handshakes (recycle). A few cover the handshakes that finish
  // between two new ones; each holds about 9 KB (its buffers and init_buf are freed by SSL_clear).
  static constexpr std::size_t max_spare_ssl = 8;
  std::vector<ssl_st*> spare_;
  bio_addr_st* listen_peer_ = nullptr;
  detail::DatagramPipe listener_pipe_;
  std::array<std::uint8_t, 32> secret_{};
  std::array<std::uint8_t, 32> previous_secret_{};
  time_point next_rotation_{};
  bool hello_cookie_ok_ = false;  // set only while on_hello drives an already-verified ClientHello
  // HMAC-SHA256 keyed with secret_ and previous_secret_ once per rotation, not once per cookie.
  detail::Hmac cookie_key_;
  detail::Hmac previous_cookie_key_;
  CidIssuer cid_issuer_;
  std::unique_ptr<TicketKeys> tickets_;  // null: no session tickets
};

}  // namespace coapgw::dtls
