#include "dtls/server_context.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <algorithm>

#include "common/bytes.hpp"
#include "common/log.hpp"
#include "common/openssl_error.hpp"
#include "dtls/ciphers.hpp"
#include "dtls/handshake_state.hpp"
#include "dtls/record_crypto.hpp"
#include "dtls/ssl_glue.hpp"
#include "dtls/ticket_keys.hpp"

namespace coapgw::dtls {

std::string_view to_string(Failure failure) {
  switch (failure) {
    case Failure::none: return "none";
    case Failure::bad_psk_identity: return "bad_psk_identity";
    case Failure::handshake_failed: return "handshake_failed";
    case Failure::handshake_timeout: return "handshake_timeout";
    case Failure::fatal_alert_received: return "fatal_alert_received";
    case Failure::internal: return "internal";
    case Failure::sequence_exhausted: return "sequence_exhausted";
  }
  return "unknown";
}

std::unique_ptr<ServerContext> ServerContext::create(const ServerSettings& settings,
                                                     std::string* error) {
  auto fail = [error](std::string text) -> std::unique_ptr<ServerContext> {
    if (error != nullptr) *error = std::move(text);
    return nullptr;
  };
  if (auto why = check_timing(settings.mtu, settings.handshake_timeout, settings.retransmit_initial); !why.empty()) {
    return fail(std::move(why));
  }
  if (settings.cookie_rotation.count() <= 0) return fail("dtls: cookie_rotation must be > 0");
  if (const auto n = settings.connection_id.length; n != 0 && (n < min_cid_length || n > max_cid_length)) {
    return fail("dtls: connection_id.length must be 0 or " + std::to_string(min_cid_length) + ".." +
                std::to_string(max_cid_length));
  }
  const bool cert = !settings.cert_file.empty();
  if (cert && settings.key_file.empty()) return fail("dtls: pki.cert needs pki.private_key");
  if (!cert && !settings.key_file.empty()) return fail("dtls: pki.private_key needs pki.cert");
  if (!cert && !settings.ca_file.empty()) return fail("dtls: pki.ca needs pki.cert");
  // Without a certificate PSK is the only credential, so it stays on even
  // with no keys yet (a reload may bring them).
  const bool psk = !cert || (settings.psk != nullptr && !settings.psk->empty());

  std::unique_ptr<ServerContext> context(new ServerContext);
  context->settings_ = settings;
  context->psk_ = settings.psk;

  const std::string suites = settings.ciphers.empty() ? ciphers::default_list(psk, cert) : settings.ciphers;
  if (auto why = context->init(settings.mtu, settings.handshake_timeout, settings.retransmit_initial, suites);
      !why.empty()) {
    return fail(std::move(why));
  }
  SSL_CTX* ctx = context->ctx_;
  if (psk) {
    SSL_CTX_set_psk_server_callback(ctx, detail::Callbacks::psk_server);
    if (!settings.psk_hint.empty() && SSL_CTX_use_psk_identity_hint(ctx, settings.psk_hint.c_str()) != 1) {
      return fail(openssl_error("dtls: bad psk hint"));
    }
  }
  if (cert) {
    if (SSL_CTX_use_certificate_chain_file(ctx, settings.cert_file.c_str()) != 1) {
      return fail(openssl_error("dtls: cannot load certificate " + settings.cert_file));
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, settings.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return fail(openssl_error("dtls: cannot load private key " + settings.key_file));
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return fail(openssl_error("dtls: private key does not match certificate"));
    }
  }
  if (!settings.ca_file.empty()) {
    auto trust = settings.trust;
    std::string why;
    if (!trust) trust = TrustStore::load(settings.ca_file, &why);
    if (!trust) return fail("dtls: " + why);
    // Client certificates are verified against the shared store, the one sessions are re-checked with.
    if (SSL_CTX_set1_verify_cert_store(ctx, trust->native()) != 1) {
      return fail(openssl_error("dtls: cannot use CA " + settings.ca_file));
    }
    if (STACK_OF(X509_NAME)* names = trust->ca_names(); names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    context->trust_ = std::move(trust);
  }
  if (settings.connection_id.length != 0 && !detail::Callbacks::add_cid_extension(ctx)) {
    return fail(openssl_error("dtls: cannot add the connection_id extension"));
  }
  if (settings.tickets.enabled) {
    auto secrets = settings.tickets.secrets;
    if (secrets.empty()) secrets.push_back(TicketKeys::random_secret());
    if (auto why = TicketKeys::check(secrets, settings.tickets.rotation); !why.empty()) return fail(std::move(why));
    if (!settings.tickets.wall_clock) return fail("dtls: tickets need a wall clock");
    const auto rotation = settings.tickets.rotation;
    context->tickets_ = std::make_unique<TicketKeys>(std::move(secrets), rotation);
    context->settings_.tickets.secrets.clear();  // one copy of the secrets, in tickets_
    if (!detail::Callbacks::enable_tickets(ctx, static_cast<long>(2 * rotation.count()))) {
      return fail(openssl_error("dtls: cannot enable session tickets"));
    }
  }
  SSL_CTX_set_cookie_generate_cb(ctx, detail::Callbacks::cookie_generate);
  SSL_CTX_set_cookie_verify_cb(ctx, detail::Callbacks::cookie_verify);
  context->listen_peer_ = BIO_ADDR_new();
  if (context->listen_peer_ == nullptr) {
    return fail(openssl_error("dtls: allocation"));
  }
  if (RAND_bytes(context->secret_.data(), static_cast<int>(context->secret_.size())) != 1 ||
      RAND_bytes(context->previous_secret_.data(),
                 static_cast<int>(context->previous_secret_.size())) != 1) {
    return fail(openssl_error("dtls: RAND_bytes"));
  }
  context->key_cookies();
  return context;
}

ServerContext::ServerContext() : Context(Role::server) {}

ServerContext::~ServerContext() {
  if (listener_ != nullptr) SSL_free(listener_);
  for (SSL* ssl : spare_) SSL_free(ssl);
  if (listen_peer_ != nullptr) BIO_ADDR_free(listen_peer_);
  OPENSSL_cleanse(secret_.data(), secret_.size());
  OPENSSL_cleanse(previous_secret_.data(), previous_secret_.size());
}

void ServerContext::set_psk_store(std::shared_ptr<const PskStore> store) {
  psk_ = std::move(store);
  ++generation_;
}

void ServerContext::set_credentials(std::shared_ptr<const PskStore> store, std::shared_ptr<const TrustStore> trust) {
  set_psk_store(std::move(store));
  if (!trust || !trust_) return;
  if (SSL_CTX_set1_verify_cert_store(ctx_, trust->native()) != 1) {
    ERR_clear_error();
    return;  // keeps verifying against the CA loaded before
  }
  if (STACK_OF(X509_NAME)* names = trust->ca_names(); names != nullptr) SSL_CTX_set_client_CA_list(ctx_, names);
  trust_ = std::move(trust);
  // An SSL object copies the context's verify store when created: none made before may serve a
  // handshake from now on.
  if (listener_ != nullptr) {
    SSL_free(listener_);
    listener_ = nullptr;
  }
  for (SSL* ssl : spare_) SSL_free(ssl);
  spare_.clear();
}

bool ServerContext::random_cid(std::span<std::byte> cid) const {
  if (cid.empty()) return false;
  cid[0] = static_cast<std::byte>(settings_.connection_id.node_id);
  if (cid.size() > 1 &&
      RAND_bytes(reinterpret_cast<unsigned char*>(cid.data() + 1), static_cast<int>(cid.size() - 1)) != 1) {
    ERR_clear_error();
    return false;
  }
  return true;
}

bool ServerContext::issue_cid(std::span<std::byte> cid) const {
  return cid_issuer_ ? cid_issuer_(cid) : random_cid(cid);
}

void ServerContext::rotate_cookie_secret_if_due(time_point now) {
  if (next_rotation_ == time_point{}) {
    next_rotation_ = now + settings_.cookie_rotation;
    return;
  }
  if (now < next_rotation_) return;
  if (now >= next_rotation_ + settings_.cookie_rotation) {
    // Two or more periods passed: the secret in use then is too old as well.
    RAND_bytes(previous_secret_.data(), static_cast<int>(previous_secret_.size()));
  } else {
    previous_secret_ = secret_;
  }
  RAND_bytes(secret_.data(), static_cast<int>(secret_.size()));
  next_rotation_ = now + settings_.cookie_rotation;
  key_cookies();
}

void ServerContext::key_cookies() {
  cookie_key_.set_key(detail::PrfHash::sha256, std::as_bytes(std::span(secret_)));
  previous_cookie_key_.set_key(detail::PrfHash::sha256, std::as_bytes(std::span(previous_secret_)));
}

ServerContext::Cookie ServerContext::make_cookie(const detail::Hmac& key, const Address& peer,
                                                 const wire::ClientHello& hello) const {
  static_assert(cookie_size == 32);  // the whole HMAC-SHA256
  Cookie cookie{};
  // Bind the cookie to the address and to what the second ClientHello must repeat (RFC 6347 4.2.1).
  std::uint8_t address[1 + 16 + 2];
  address[0] = static_cast<std::uint8_t>(peer.family());
  std::copy_n(peer.ip_bytes(), peer.ip_size(), address + 1);
  const std::size_t port_at = 1 + peer.ip_size();
  bytes::store_be16(address + port_at, peer.port());
  key.compute({std::as_bytes(std::span(address, port_at + 2)), hello.fixed_fields, hello.suites_and_compression},
              reinterpret_cast<std::byte*>(cookie.data()));
  return cookie;
}

bool ServerContext::cookie_valid(const Address& peer, const wire::ClientHello& hello) const {
  if (hello.cookie.size() != cookie_size) return false;
  for (const auto* key : {&cookie_key_, &previous_cookie_key_}) {
    const Cookie expected = make_cookie(*key, peer, hello);
    if (CRYPTO_memcmp(expected.data(), hello.cookie.data(), cookie_size) == 0) return true;
  }
  return false;
}

void ServerContext::write_hello_verify_request(const wire::ClientHello& hello, const Cookie& cookie,
                                               Output& out) const {
  constexpr std::size_t body = 2 + 1 + cookie_size;
  constexpr std::size_t fragment = wire::handshake_header_size + body;
  std::vector<std::byte> d;
  d.reserve(wire::record_header_size + fragment);
  auto put = [&d](std::uint64_t value, std::size_t count) { bytes::append_be(d, value, count); };
  // Record: handshake, DTLS 1.0 version (RFC 6347 4.2.1), epoch 0, the
  // ClientHello's record sequence number copied as the RFC asks.
  put(22, 1);
  put(0xfeff, 2);
  put(0, 2);
  put(hello.record_sequence, 6);
  put(fragment, 2);
  // HelloVerifyRequest: the server's first handshake message, message_seq 0.
  put(3, 1);
  put(body, 3);
  put(0, 2);
  put(0, 3);
  put(body, 3);
  put(0xfeff, 2);
  put(cookie_size, 1);
  for (auto b : cookie) d.push_back(static_cast<std::byte>(b));
  out.datagrams.push_back(std::move(d));
}

bool ServerContext::ensure_listener() {
  if (listener_ != nullptr) return true;
  if (!spare_.empty()) {
    listener_ = spare_.back();
    spare_.pop_back();
    return true;
  }
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return false;
  BIO* bio = detail::new_datagram_bio(&listener_pipe_);
  if (bio == nullptr) {
    SSL_free(ssl);
    return false;
  }
  SSL_set_bio(ssl, bio, bio);
  SSL_set_accept_state(ssl);
  listener_ = ssl;
  return true;
}

void ServerContext::recycle(detail::HandshakeState& handshake, std::uint64_t generation) {
  if (spare_.size() >= max_spare_ssl || handshake.ssl == nullptr || generation != generation_) return;
  // With a certificate the ECDHE suites are on, and SSL_clear keeps the last peer's supported_groups
  // (OpenSSL 3.0 frees them only in SSL_free): a device that sends none would get a curve chosen
  // from another device's list. Only PSK-only contexts reuse their SSL objects.
  if (!settings_.cert_file.empty()) return;
  SSL* ssl = handshake.ssl;
  SSL_set_app_data(ssl, nullptr);
  SSL_set_session(ssl, nullptr);  // SSL_clear would keep the session (and its master secret)
  if (SSL_clear(ssl) != 1) {
    ERR_clear_error();
    return;  // the HandshakeState frees it
  }
  handshake.ssl = nullptr;
  BIO_set_data(SSL_get_rbio(ssl), &listener_pipe_);
  spare_.push_back(ssl);
}

ServerContext::HelloResult ServerContext::on_hello(const Address& peer,
                                                   std::span<const std::byte> datagram,
                                                   Output& out, time_point now, bool busy) {
  rotate_cookie_secret_if_due(now);
  wire::ClientHello hello;
  switch (wire::parse_client_hello(datagram, &hello)) {
    case wire::HelloParse::not_client_hello: return {HelloVerdict::not_client_hello, nullptr};
    case wire::HelloParse::malformed: return {HelloVerdict::malformed, nullptr};
    case wire::HelloParse::ok: break;
  }
  if (hello.cookie.empty() || !cookie_valid(peer, hello)) {
    write_hello_verify_request(hello, make_cookie(cookie_key_, peer, hello), out);
    return {hello.cookie.empty() ? HelloVerdict::hello_verify_sent : HelloVerdict::bad_cookie, nullptr};
  }
  if (busy) {
    write_hello_verify_request(hello, make_cookie(cookie_key_, peer, hello), out);
    return {HelloVerdict::busy, nullptr};
  }
  if (!ensure_listener()) {
    ERR_clear_error();
    return {HelloVerdict::malformed, nullptr};
  }
  listener_pipe_.feed(datagram, &out);
  listener_pipe_.mtu_overhead = peer.is_v6() ? 48 : 28;
  hello_cookie_ok_ = true;
  const int listened = DTLSv1_listen(listener_, listen_peer_);
  listener_pipe_.detach();
  if (listened != 1) {
    // OpenSSL refused what our parser accepted (e.g. an unsupported version).
    hello_cookie_ok_ = false;
    SSL_free(listener_);
    listener_ = nullptr;
    ERR_clear_error();
    return {HelloVerdict::malformed, nullptr};
  }
  SSL* ssl = listener_;
  listener_ = nullptr;
  std::unique_ptr<Engine> engine(new Engine(*this, ssl, peer, now));
  engine->psk_hint_ = settings_.psk_hint;
  engine->generation_ = generation_;
  engine->start(out, now);
  hello_cookie_ok_ = false;
  return {HelloVerdict::accepted, std::move(engine)};
}

}  // namespace coapgw::dtls
