#include "dtls/ssl_glue.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "common/log.hpp"
#include "dtls/cid_handshake.hpp"
#include "dtls/client_context.hpp"
#include "dtls/datagram_pipe.hpp"
#include "dtls/registry_cache.hpp"
#include "dtls/engine.hpp"
#include "dtls/handshake_state.hpp"
#include "dtls/record_crypto.hpp"
#include "dtls/server_context.hpp"
#include "dtls/wire.hpp"

namespace coapgw::dtls::detail {
namespace {

int bio_write(BIO* bio, const char* data, int length) {
  BIO_clear_retry_flags(bio);
  auto* pipe = static_cast<DatagramPipe*>(BIO_get_data(bio));
  if (length <= 0) return 0;
  if (pipe == nullptr) return length;
  const auto* first = reinterpret_cast<const std::byte*>(data);
  std::span<const std::byte> datagram(first, static_cast<std::size_t>(length));
  // Noted even when the datagram is dropped below: a record number OpenSSL
  // used must never be used again by the lean record layer.
  std::span<const std::byte> rest = datagram;
  while (!rest.empty()) {
    const auto record = wire::next_record(rest, &rest);
    if (!record) break;
    if (record->epoch == 0) {
      pipe->last_epoch0_sequence = std::max(pipe->last_epoch0_sequence, record->sequence);
      pipe->wrote_epoch0 = true;
    } else if (record->epoch == 1) {
      pipe->last_epoch1_sequence = std::max(pipe->last_epoch1_sequence, record->sequence);
      pipe->wrote_epoch1 = true;
    }
  }
  if (pipe->out == nullptr) return length;  // nobody to send to: drop
  if (pipe->cid != nullptr && pipe->cid->translates_outbound()) {
    std::vector<std::byte> translated;
    // A record that cannot be rewritten is not sent: OpenSSL retransmits the flight.
    if (pipe->cid->outbound(datagram, &translated)) pipe->out->datagrams.push_back(std::move(translated));
    return length;
  }
  pipe->out->datagrams.emplace_back(datagram.begin(), datagram.end());
  return length;
}

int bio_read(BIO* bio, char* data, int length) {
  BIO_clear_retry_flags(bio);
  auto* pipe = static_cast<DatagramPipe*>(BIO_get_data(bio));
  if (pipe == nullptr || pipe->in_consumed || length <= 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  // A datagram larger than OpenSSL's buffer is truncated, as a UDP socket would.
  const std::size_t n = std::min(pipe->in.size(), static_cast<std::size_t>(length));
  if (n > 0) std::memcpy(data, pipe->in.data(), n);
  pipe->in_consumed = true;
  return static_cast<int>(n);
}

long bio_ctrl(BIO* bio, int command, long, void*) {
  auto* pipe = static_cast<DatagramPipe*>(BIO_get_data(bio));
  switch (command) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return pipe != nullptr && !pipe->in_consumed ? static_cast<long>(pipe->in.size()) : 0;
    case BIO_CTRL_DGRAM_GET_MTU_OVERHEAD:
      return pipe != nullptr ? pipe->mtu_overhead : 28;
    default:
      // No path MTU discovery (SSL_OP_NO_QUERY_MTU), no peer address, no
      // timeouts: the worker owns all of that.
      return 0;
  }
}

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

int bio_destroy(BIO* bio) {
  BIO_set_data(bio, nullptr);
  return 1;
}

Engine* engine_of(const SSL* ssl) { return static_cast<Engine*>(SSL_get_app_data(ssl)); }

Context* context_of(const SSL* ssl) { return static_cast<Context*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl))); }

// Only callbacks registered on a server (client) context's SSL_CTX use these.
ServerContext* server_of(const SSL* ssl) {
  Context* context = context_of(ssl);
  return context != nullptr && context->role() == Context::Role::server ? static_cast<ServerContext*>(context)
                                                                          : nullptr;
}
ClientContext* client_of(const SSL* ssl) {
  Context* context = context_of(ssl);
  return context != nullptr && context->role() == Context::Role::client ? static_cast<ClientContext*>(context)
                                                                          : nullptr;
}

unsigned char* u8(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }

}  // namespace

bool export_traffic_keys(SSL* ssl, bool server, const SuiteParams** suite, TrafficKeys* read, TrafficKeys* write) {
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  SSL_SESSION* session = SSL_get_session(ssl);
  const auto* params = cipher != nullptr ? find_suite(SSL_CIPHER_get_protocol_id(cipher)) : nullptr;
  if (params == nullptr || session == nullptr) return false;
  std::array<std::byte, 48> master{};
  std::array<std::byte, 32> client_random{}, server_random{};
  // The server reads with the client_write keys and writes with the server_write keys; the client
  // the other way round.
  const bool derived =
      SSL_SESSION_get_master_key(session, u8(master.data()), master.size()) == master.size() &&
      SSL_get_client_random(ssl, u8(client_random.data()), client_random.size()) == client_random.size() &&
      SSL_get_server_random(ssl, u8(server_random.data()), server_random.size()) == server_random.size() &&
      derive_traffic_keys(*params, master, client_random, server_random, server ? read : write,
                          server ? write : read);
  OPENSSL_cleanse(master.data(), master.size());
  if (derived) *suite = params;
  return derived;
}

const BIO_METHOD* datagram_bio_method() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "coapgw-datagram");
    if (m != nullptr) {
      BIO_meth_set_write(m, bio_write);
      BIO_meth_set_read(m, bio_read);
      BIO_meth_set_ctrl(m, bio_ctrl);
      BIO_meth_set_create(m, bio_create);
      BIO_meth_set_destroy(m, bio_destroy);
    }
    return m;
  }();
  return method;
}

BIO* new_datagram_bio(DatagramPipe* pipe) {
  const BIO_METHOD* method = datagram_bio_method();
  if (method == nullptr) return nullptr;
  BIO* bio = BIO_new(method);
  if (bio != nullptr) BIO_set_data(bio, pipe);
  return bio;
}

unsigned int Callbacks::psk_server(SSL* ssl, const char* identity, unsigned char* psk,
                                   unsigned int max_psk_len) {
  Engine* engine = engine_of(ssl);
  ServerContext* context = server_of(ssl);
  if (engine == nullptr || context == nullptr) return 0;
  const std::string_view id = identity != nullptr ? std::string_view(identity) : std::string_view();
  std::optional<std::string_view> found = context->psk_ ? context->psk_->find(id) : std::nullopt;
  if (!found && context->registry_ != nullptr) {
    // dtls.psk.lookup: the registry's answer, fetched before this datagram was handed to OpenSSL.
    const RegistryEntry* entry = context->registry_->find(id);
    if (entry != nullptr && entry->usable()) found = std::string_view(entry->key.data(), entry->key.size());
  }
  const std::string_view key = found.value_or(std::string_view());
  engine->identity_.assign(id);
  if (!found || key.empty() || key.size() > max_psk_len) {
    engine->handshake_->psk_identity_unknown = true;
    log::debug("dtls: unknown PSK identity '" + std::string(id) + "' from " +
               engine->peer_.to_string());
    return 0;
  }
  std::memcpy(psk, key.data(), key.size());
  engine->psk_key_ = key;
  return static_cast<unsigned int>(key.size());
}

int Callbacks::cookie_generate(SSL*, unsigned char*, unsigned int*) {
  // HelloVerifyRequests are written by ServerContext without OpenSSL; the
  // listener only ever sees ClientHellos whose cookie was already checked.
  return 0;
}

unsigned int Callbacks::psk_client(SSL* ssl, const char* hint, char* identity, unsigned int max_identity_len,
                                   unsigned char* psk, unsigned int max_psk_len) {
  Engine* engine = engine_of(ssl);
  ClientContext* context = client_of(ssl);
  if (engine == nullptr || context == nullptr) return 0;
  const auto& settings = context->settings();
  // Both bounds were checked when the context was made; checked again because OpenSSL owns the buffers.
  if (settings.psk_identity.size() + 1 > max_identity_len || settings.psk_key.empty() ||
      settings.psk_key.size() > max_psk_len) {
    return 0;
  }
  std::memcpy(identity, settings.psk_identity.c_str(), settings.psk_identity.size() + 1);
  std::memcpy(psk, settings.psk_key.data(), settings.psk_key.size());
  engine->identity_ = settings.psk_identity;
  engine->psk_key_.assign(settings.psk_key.data(), settings.psk_key.size());
  engine->psk_hint_ = hint != nullptr ? hint : "";
  return static_cast<unsigned int>(settings.psk_key.size());
}

int Callbacks::cookie_verify(SSL* ssl, const unsigned char*, unsigned int) {
  ServerContext* context = server_of(ssl);
  return context != nullptr && context->hello_cookie_ok_ ? 1 : 0;
}

void Callbacks::message(int write_p, int, int content_type, const void* buf, size_t len, SSL* ssl,
                        void*) {
  Engine* engine = engine_of(ssl);
  if (engine == nullptr || write_p != 0) return;
  if (content_type == SSL3_RT_CHANGE_CIPHER_SPEC) {
    engine->handshake_->peer_ccs_seen = true;
  } else if (content_type == SSL3_RT_HANDSHAKE && len > 0 &&
             *static_cast<const unsigned char*>(buf) == SSL3_MT_FINISHED) {
    engine->handshake_->peer_finished_seen = true;
  }
}

void Callbacks::info(const SSL* ssl, int where, int ret) {
  // SSL_CB_READ_ALERT shares the SSL_CB_ALERT bit with SSL_CB_WRITE_ALERT.
  if ((where & SSL_CB_READ_ALERT) != SSL_CB_READ_ALERT) return;
  Engine* engine = engine_of(ssl);
  if (engine == nullptr) return;
  if (((ret >> 8) & 0xff) == SSL3_AL_FATAL) {
    engine->handshake_->fatal_alert_received = true;
    log::debug(std::string("dtls: fatal alert '") + SSL_alert_desc_string_long(ret) + "' from " +
               engine->peer_.to_string());
  }
}

int Callbacks::cid_add(SSL* ssl, unsigned int, unsigned int context, const unsigned char** out, size_t* out_len,
                       X509*, size_t, int*, void*) {
  Engine* engine = engine_of(ssl);
  if (engine == nullptr || !engine->handshake_) return 0;
  auto& cid = engine->handshake_->cid;
  if ((context & SSL_EXT_CLIENT_HELLO) != 0) {
    // Client: offer our CID (the server puts it in its records to us; empty = plain records).
    if (!cid.offered) return 0;
  } else {
    // Server: OpenSSL asks only when the ClientHello had the extension.
    auto* server = server_of(ssl);
    if (!cid.offered || server == nullptr) return 0;
    const std::size_t length = server->settings().connection_id.length;
    if (length == 0) return 0;
    if (cid.read.size() != length) {
      cid.read.assign(length, std::byte{0});
      if (!server->issue_cid(cid.read)) {
        cid.read.clear();  // no CID free: this session goes without one
        return 0;
      }
    }
    cid.negotiated = true;
  }
  const auto& own = cid.read;
  cid.extension.assign(1, static_cast<std::byte>(own.size()));
  cid.extension.insert(cid.extension.end(), own.begin(), own.end());
  *out = reinterpret_cast<const unsigned char*>(cid.extension.data());
  *out_len = cid.extension.size();
  return 1;
}

int Callbacks::cid_parse(SSL* ssl, unsigned int, unsigned int context, const unsigned char* in, size_t in_len,
                         X509*, size_t, int* alert, void*) {
  Engine* engine = engine_of(ssl);
  if (engine == nullptr || !engine->handshake_) return 1;
  auto& cid = engine->handshake_->cid;
  // struct { opaque cid<0..2^8-1>; } ConnectionId;
  if (in_len < 1 || static_cast<std::size_t>(in[0]) != in_len - 1) {
    *alert = SSL_AD_DECODE_ERROR;
    return 0;
  }
  const auto* first = reinterpret_cast<const std::byte*>(in + 1);
  if ((context & SSL_EXT_CLIENT_HELLO) != 0) {
    cid.offered = true;  // the client's CID: what we put in our records to it
  } else {
    if (!cid.offered) {
      *alert = SSL_AD_UNSUPPORTED_EXTENSION;
      return 0;
    }
    cid.negotiated = true;  // the server's CID: what we put in our records to it
  }
  cid.write.assign(first, first + (in_len - 1));
  return 1;
}

bool Callbacks::add_cid_extension(SSL_CTX* ctx) {
  // Negotiated on resumption too (no SSL_EXT_IGNORE_ON_RESUMPTION): a CID is not part of the
  // resumed session state, and a device resuming with a ticket gets a new one.
  const unsigned int context = SSL_EXT_CLIENT_HELLO | SSL_EXT_TLS1_2_SERVER_HELLO | SSL_EXT_TLS1_2_AND_BELOW_ONLY;
  return SSL_CTX_add_custom_ext(ctx, wire::connection_id_extension, context, cid_add, nullptr, nullptr, cid_parse,
                                nullptr) == 1;
}

unsigned int Callbacks::dtls_timer(SSL* ssl, unsigned int previous_us) {
  constexpr unsigned int max_us = 60'000'000;  // RFC 6347 4.2.4.1: at least 60 s
  Context* context = context_of(ssl);
  const auto initial = context != nullptr ? context->retransmit_initial_.count() : 1000;
  if (previous_us == 0) return static_cast<unsigned int>(std::clamp<long long>(initial, 1, 60'000) * 1000);
  return previous_us >= max_us / 2 ? max_us : previous_us * 2;
}

}  // namespace coapgw::dtls::detail
