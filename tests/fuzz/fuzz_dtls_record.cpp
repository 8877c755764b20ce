// fuzz_dtls_record — arbitrary datagrams into the DTLS module's three entry
// points: looks_like_client_hello, ServerContext::on_hello (PSK-only context)
// and an established Engine (built at init by a real in-memory handshake with
// an OpenSSL client, rebuilt whenever an input closes it).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "test_peer.hpp"

namespace {

using namespace coapgw::dtls;

struct State {
  std::unique_ptr<ServerContext> server;
  std::unique_ptr<test::Client> client;
  std::unique_ptr<Engine> engine;
  Output out;
};

State* g_state = nullptr;
const coapgw::Address g_peer = coapgw::Address::v4({127, 0, 0, 2}, 40000);

void establish(State& s) {
  s.client = std::make_unique<test::Client>(test::ClientOptions{});
  auto r = test::handshake(*s.server, *s.client, g_peer, std::chrono::steady_clock::now());
  s.engine = std::move(r.engine);
  if (!s.engine || s.engine->state() != Engine::State::established) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_state = new State;
  auto store = std::make_shared<PskStore>();
  store->add("demo-device", "demo-secret");
  ServerSettings settings;
  settings.psk = store;
  std::string error;
  g_state->server = ServerContext::create(settings, &error);
  if (!g_state->server) __builtin_trap();
  establish(*g_state);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  State& s = *g_state;
  const std::span<const std::byte> datagram(reinterpret_cast<const std::byte*>(data), size);
  const auto now = std::chrono::steady_clock::now();

  (void)looks_like_client_hello(datagram);

  s.out.clear();
  auto hello = s.server->on_hello(g_peer, datagram, s.out, now);
  if (hello.verdict == ServerContext::HelloVerdict::accepted && !hello.engine) __builtin_trap();
  if (hello.engine) {
    // An accepted engine must survive the same bytes again.
    s.out.clear();
    hello.engine->on_datagram(datagram, s.out, now);
  }

  s.out.clear();
  s.engine->on_datagram(datagram, s.out, now);
  if (s.engine->state() != Engine::State::established) establish(s);
  return 0;
}
