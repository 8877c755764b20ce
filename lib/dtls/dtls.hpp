// coapgw::dtls — DTLS 1.2 on OpenSSL 3 without sockets, in both roles.
//
// The module owns the stateless cookie exchange (ServerContext::on_hello),
// PSK and certificate authentication, the PSK client role for coaps:// upstreams
// (ClientContext::connect), and the per-session Engine that turns datagrams in
// into datagrams and plaintexts out, the same in either role. The worker (and
// the coaps:// upstream) owns sockets, timers and session tables; the worker
// calls looks_like_client_hello() first, then on_hello() for peers without a
// session and Engine::on_datagram() otherwise.
// No OpenSSL header is reachable from here.
#pragma once

#include "dtls/client_context.hpp"
#include "dtls/engine.hpp"
#include "dtls/output.hpp"
#include "dtls/psk_store.hpp"
#include "dtls/server_context.hpp"
#include "dtls/session_state.hpp"
#include "dtls/settings.hpp"
#include "dtls/wire.hpp"
