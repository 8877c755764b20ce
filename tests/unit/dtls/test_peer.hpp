// In-memory DTLS 1.2 client (a real OpenSSL client SSL object on memory BIOs)
// and a pump that runs it against coapgw::dtls. Shared by the unit tests, the
// fuzz target (to build an established engine) and bench/dtls_memory.cpp.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dtls/dtls.hpp"

namespace coapgw::dtls::test {

using Bytes = std::vector<std::byte>;

inline Bytes to_bytes(std::string_view s) {
  Bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}
inline std::string to_string(const Bytes& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

struct ClientOptions {
  bool psk = true;
  std::string identity = "demo-device";
  std::string key = "demo-secret";
  std::string ciphers = "PSK-AES128-CCM8";
  std::string cert_file, key_file;  // client certificate (PKI)
  bool verify_server = false;       // check the server certificate against trust_file
  std::string trust_file;
  SSL_SESSION* resume = nullptr;  // offered for resumption (its ticket); the caller keeps its reference
};

class Client {
 public:
  explicit Client(const ClientOptions& options) : options_(options) {
    ctx_ = SSL_CTX_new(DTLS_client_method());
    SSL_CTX_set_min_proto_version(ctx_, DTLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx_, DTLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx_, options.ciphers.c_str());
    if (options.psk) SSL_CTX_set_psk_client_callback(ctx_, &Client::psk_callback);
    if (!options.cert_file.empty()) {
      SSL_CTX_use_certificate_file(ctx_, options.cert_file.c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(ctx_, options.key_file.c_str(), SSL_FILETYPE_PEM);
    }
    if (options.verify_server) {
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
      if (!options.trust_file.empty()) SSL_CTX_load_verify_locations(ctx_, options.trust_file.c_str(), nullptr);
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_app_data(ssl_, this);
    SSL_set_options(ssl_, SSL_OP_NO_QUERY_MTU);
    rbio_ = BIO_new(BIO_s_mem());
    wbio_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rbio_, -1);
    BIO_set_mem_eof_return(wbio_, -1);
    SSL_set_bio(ssl_, rbio_, wbio_);
    DTLS_set_link_mtu(ssl_, 1500);
    if (options.resume != nullptr) SSL_set_session(ssl_, options.resume);
    SSL_set_connect_state(ssl_);
  }
  ~Client() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Advances the handshake; afterwards reads application data.
  void step() {
    if (failed_ || closed_) return;
    if (!established_) {
      const int r = SSL_do_handshake(ssl_);
      if (r == 1) {
        established_ = true;
      } else {
        const int e = SSL_get_error(ssl_, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) failed_ = true;
        ERR_clear_error();
        return;
      }
    }
    char buffer[16384];
    for (;;) {
      const int n = SSL_read(ssl_, buffer, sizeof buffer);
      if (n > 0) {
        received_.emplace_back(buffer, static_cast<std::size_t>(n));
        continue;
      }
      const int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_ZERO_RETURN) closed_ = true;
      else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) failed_ = true;
      ERR_clear_error();
      return;
    }
  }
  // Delivers each datagram separately and lets the client react to it.
  void receive(const std::vector<Bytes>& datagrams) {
    for (const auto& d : datagrams) {
      BIO_write(rbio_, d.data(), static_cast<int>(d.size()));
      step();
    }
  }
  // Everything the client wrote since the last call, as one datagram (empty if nothing).
  Bytes take() {
    Bytes out(static_cast<std::size_t>(BIO_ctrl_pending(wbio_)));
    if (!out.empty()) BIO_read(wbio_, out.data(), static_cast<int>(out.size()));
    return out;
  }
  bool write(std::string_view text) {
    return SSL_write(ssl_, text.data(), static_cast<int>(text.size())) == static_cast<int>(text.size());
  }
  void shutdown() { SSL_shutdown(ssl_); }
  void handle_timeout() { DTLSv1_handle_timeout(ssl_); }

  bool established() const { return established_; }
  bool failed() const { return failed_; }
  bool closed() const { return closed_; }
  bool hint_received() const { return hint_received_; }
  const std::string& hint() const { return hint_; }
  std::vector<std::string>& received() { return received_; }
  SSL* ssl() const { return ssl_; }

 private:
  static unsigned int psk_callback(SSL* ssl, const char* hint, char* identity, unsigned int max_identity,
                                   unsigned char* psk, unsigned int max_psk) {
    auto* self = static_cast<Client*>(SSL_get_app_data(ssl));
    self->hint_received_ = hint != nullptr;
    self->hint_ = hint != nullptr ? hint : "";
    const auto& o = self->options_;
    if (o.identity.size() + 1 > max_identity || o.key.size() > max_psk) return 0;
    std::memcpy(identity, o.identity.c_str(), o.identity.size() + 1);
    std::memcpy(psk, o.key.data(), o.key.size());
    return static_cast<unsigned int>(o.key.size());
  }

  ClientOptions options_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;
  BIO* wbio_ = nullptr;
  bool established_ = false, failed_ = false, closed_ = false, hint_received_ = false;
  std::string hint_;
  std::vector<std::string> received_;
};

struct HandshakeResult {
  ServerContext::HelloVerdict first = ServerContext::HelloVerdict::malformed;
  ServerContext::HelloVerdict second = ServerContext::HelloVerdict::malformed;
  std::unique_ptr<Engine> engine;
  bool server_saw_established = false;
  Output last;  // the server's Output of the last call
};

// Cookie exchange, then datagrams back and forth until both sides settle.
inline HandshakeResult handshake(ServerContext& server, Client& client, const Address& peer,
                                 std::chrono::steady_clock::time_point now) {
  HandshakeResult r;
  Output out;
  client.step();
  r.first = server.on_hello(peer, client.take(), out, now).verdict;
  client.receive(out.datagrams);
  out.clear();
  auto hello = server.on_hello(peer, client.take(), out, now);
  r.second = hello.verdict;
  r.engine = std::move(hello.engine);
  if (!r.engine) {
    r.last = std::move(out);
    return r;
  }
  for (int round = 0; round < 16; ++round) {
    client.receive(out.datagrams);
    const Bytes next = client.take();
    if (next.empty()) break;
    out.clear();
    r.engine->on_datagram(next, out, now);
    r.server_saw_established = r.server_saw_established || out.established;
    if (r.engine->state() == Engine::State::closed) {
      client.receive(out.datagrams);
      break;
    }
  }
  r.last = std::move(out);
  return r;
}

}  // namespace coapgw::dtls::test
