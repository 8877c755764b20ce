// coapgw::dtls::ClientContext — the client role of the DTLS engine, for coaps:// upstreams: one
// per upstream, holding its PSK (identity and key) and the shared Context (cipher policy, mtu,
// handshake timing, record-layer scratch). connect() starts a session: an Engine in the client
// role whose ClientHello is in the Output; from then on the caller feeds it datagrams and timer
// calls exactly as the worker does for a device session. No I/O. Not thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>

#include "common/address.hpp"
#include "dtls/context.hpp"
#include "dtls/engine.hpp"
#include "dtls/output.hpp"
#include "dtls/settings.hpp"

namespace coapgw::dtls {

class ClientContext final : public Context {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  // nullptr + error on an unusable PSK (empty key, identity or key longer than DTLS allows, NUL in
  // the identity), cipher list or settings.
  static std::unique_ptr<ClientContext> create(ClientSettings settings, std::string* error);

  // A new session with `peer`: the ClientHello goes to out.datagrams. nullptr (out.failure set)
  // when OpenSSL refuses to start one.
  // `resume`: an earlier engine's resumption() (RFC 5077 ticket; with session_tickets), offered
  // for an abbreviated handshake; a server that does not take it runs a full one.
  std::unique_ptr<Engine> connect(const Address& peer, Output& out, time_point now,
                                  std::span<const std::byte> resume = {});

  const ClientSettings& settings() const { return settings_; }

 private:
  ClientContext() : Context(Role::client) {}
  ClientSettings settings_;
};

}  // namespace coapgw::dtls
