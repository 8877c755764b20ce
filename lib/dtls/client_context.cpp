#include "dtls/client_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "dtls/ciphers.hpp"
#include "dtls/handshake_state.hpp"
#include "dtls/ssl_glue.hpp"
#include "dtls/wire.hpp"

namespace coapgw::dtls {

std::unique_ptr<ClientContext> ClientContext::create(ClientSettings settings, std::string* error) {
  auto fail = [error](std::string text) -> std::unique_ptr<ClientContext> {
    if (error != nullptr) *error = std::move(text);
    return nullptr;
  };
  if (settings.psk_key.empty()) return fail("dtls: psk key is empty");
  if (settings.psk_identity.size() > PSK_MAX_IDENTITY_LEN) {
    return fail("dtls: psk identity longer than " + std::to_string(PSK_MAX_IDENTITY_LEN));
  }
  if (settings.psk_key.size() > PSK_MAX_PSK_LEN) {
    return fail("dtls: psk key longer than " + std::to_string(PSK_MAX_PSK_LEN));
  }
  if (settings.psk_identity.find('\0') != std::string::npos) return fail("dtls: psk identity contains a NUL byte");
  std::unique_ptr<ClientContext> context(new ClientContext);
  const std::string suites = settings.ciphers.empty() ? std::string(ciphers::psk) : settings.ciphers;
  if (auto why = context->init(settings.mtu, settings.handshake_timeout, settings.retransmit_initial, suites);
      !why.empty()) {
    return fail(std::move(why));
  }
  SSL_CTX_set_psk_client_callback(context->ctx_, detail::Callbacks::psk_client);
  if (settings.connection_id) {
    if (settings.connection_id->size() > wire::max_cid_size) return fail("dtls: connection id longer than 255");
    if (!detail::Callbacks::add_cid_extension(context->ctx_)) return fail("dtls: cannot add the connection_id extension");
  }
  if (settings.session_tickets) SSL_CTX_clear_options(context->ctx_, SSL_OP_NO_TICKET);
  context->settings_ = std::move(settings);
  return context;
}

std::unique_ptr<Engine> ClientContext::connect(const Address& peer, Output& out, time_point now,
                                               std::span<const std::byte> resume) {
  SSL* ssl = SSL_new(ctx_);
  BIO* bio = ssl != nullptr ? detail::new_datagram_bio(nullptr) : nullptr;
  if (bio == nullptr) {
    SSL_free(ssl);
    ERR_clear_error();
    out.closed = true;
    out.failure = Failure::internal;
    return nullptr;
  }
  SSL_set_bio(ssl, bio, bio);
  SSL_set_connect_state(ssl);
  if (!resume.empty() && settings_.session_tickets) {
    const auto* p = reinterpret_cast<const unsigned char*>(resume.data());
    if (SSL_SESSION* session = d2i_SSL_SESSION(nullptr, &p, static_cast<long>(resume.size())); session != nullptr) {
      SSL_set_session(ssl, session);  // takes its own reference
      SSL_SESSION_free(session);
    }
    ERR_clear_error();
  }
  std::unique_ptr<Engine> engine(new Engine(*this, ssl, peer, now));
  if (settings_.connection_id) {
    auto& cid = engine->handshake_->cid;
    cid.offered = true;
    cid.read = *settings_.connection_id;
  }
  engine->start(out, now);
  return engine;
}

}  // namespace coapgw::dtls
