// fuzz_dtls_lean — arbitrary bytes into the lean DTLS record layer:
// - an established Engine that already switched to the lean layer (built at
//   init by a real in-memory handshake with an OpenSSL client plus one record
//   each way; rebuilt whenever an input closes it), fed the input as a datagram;
// - the same datagram with its records re-sealed under the session's real
//   client keys, so the fuzzer reaches the plaintext handling (alerts,
//   handshake, application data) behind authentication;
// - a second lean session that negotiated an RFC 9146 Connection ID (our engine in the client
//   role against the server role): the input raw, then its records re-sealed as tls12_cid
//   records with the issued CID (inner type, epoch and sequence from the input);
// - deserialize() of saved session state, and import of whatever it accepts.
// Invariants: no crash/UB, and nothing opened from the raw input (which
// cannot carry a valid tag) ever reaches Output::plaintexts.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "dtls/client_context.hpp"
#include "dtls/record_crypto.hpp"
#include "test_peer.hpp"

namespace {

using namespace coapgw::dtls;

struct State {
  std::unique_ptr<ServerContext> server;
  std::unique_ptr<test::Client> client;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<detail::RecordCrypto> crypto;
  const detail::SuiteParams* suite = nullptr;
  detail::TrafficKeys client_keys;
  Output out;
};

// The Connection ID session: our client engine offers the extension, the server issues a CID.
struct CidState {
  std::unique_ptr<ServerContext> server;
  std::unique_ptr<ClientContext> client_context;
  std::unique_ptr<Engine> client;
  std::unique_ptr<Engine> engine;
  const detail::SuiteParams* suite = nullptr;
  detail::TrafficKeys client_keys;
  std::vector<std::byte> cid;
};

State* g_state = nullptr;
CidState* g_cid = nullptr;
const coapgw::Address g_peer = coapgw::Address::v4({127, 0, 0, 2}, 40000);

void establish(State& s) {
  s.client = std::make_unique<test::Client>(test::ClientOptions{});
  auto r = test::handshake(*s.server, *s.client, g_peer, std::chrono::steady_clock::now());
  s.engine = std::move(r.engine);
  if (!s.engine || s.engine->state() != Engine::State::established) __builtin_trap();
  if (!s.client->write("prove")) __builtin_trap();
  Output out;
  s.engine->on_datagram(s.client->take(), out, std::chrono::steady_clock::now());
  if (!s.engine->lean()) __builtin_trap();
  const auto state = s.engine->export_state();
  if (!state) __builtin_trap();
  s.suite = detail::find_suite(state->cipher_suite);
  std::copy(state->client_write_key.begin(), state->client_write_key.end(), s.client_keys.key.begin());
  std::copy(state->client_write_iv.begin(), state->client_write_iv.end(), s.client_keys.iv.begin());
}

void establish_cid(CidState& s) {
  const auto now = std::chrono::steady_clock::now();
  Output out;
  s.engine.reset();
  s.client = s.client_context->connect(g_peer, out, now);
  if (!s.client) __builtin_trap();
  std::vector<std::vector<std::byte>> to_server = std::move(out.datagrams);
  for (int round = 0; round < 20 && !to_server.empty(); ++round) {
    std::vector<std::vector<std::byte>> to_client;
    for (auto& d : to_server) {
      Output o;
      if (!s.engine) {
        if (auto r = s.server->on_hello(g_peer, d, o, now); r.engine) s.engine = std::move(r.engine);
      } else {
        s.engine->on_datagram(d, o, now);
      }
      for (auto& x : o.datagrams) to_client.push_back(std::move(x));
    }
    to_server.clear();
    for (auto& d : to_client) {
      Output o;
      s.client->on_datagram(d, o, now);
      for (auto& x : o.datagrams) to_server.push_back(std::move(x));
    }
  }
  if (!s.engine || s.engine->state() != Engine::State::established) __builtin_trap();
  const std::byte prove[] = {std::byte{'p'}};
  Output sent, opened;
  if (!s.client->send(prove, sent) || sent.datagrams.empty()) __builtin_trap();
  s.engine->on_datagram(sent.datagrams[0], opened, now);
  if (!s.engine->lean() || s.engine->connection_id().empty()) __builtin_trap();
  const auto state = s.engine->export_state();
  if (!state) __builtin_trap();
  s.suite = detail::find_suite(state->cipher_suite);
  std::copy(state->client_write_key.begin(), state->client_write_key.end(), s.client_keys.key.begin());
  std::copy(state->client_write_iv.begin(), state->client_write_iv.end(), s.client_keys.iv.begin());
  s.cid = state->local_cid;
}

void fuzz_cid(std::span<const std::byte> input, detail::RecordCrypto& crypto, Output& out) {
  CidState& s = *g_cid;
  const auto now = std::chrono::steady_clock::now();
  out.clear();
  s.engine->on_datagram(input, out, now);
  if (!out.plaintexts.empty()) __builtin_trap();
  if (s.engine->state() != Engine::State::established) establish_cid(s);
  std::vector<std::byte> sealed;
  std::span<const std::byte> rest = input;
  while (!rest.empty()) {
    const auto record = wire::next_record(rest, &rest);
    if (!record) break;
    const auto plaintext = record->fragment.first(std::min(record->fragment.size(), detail::max_plaintext_size));
    crypto.seal_record(*s.suite, s.client_keys, record->type, record->epoch, record->sequence, plaintext, &sealed,
                       s.cid);
  }
  if (!sealed.empty()) {
    out.clear();
    s.engine->on_datagram(sealed, out, now);
    if (s.engine->state() != Engine::State::established) establish_cid(s);
  }
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
  g_state->crypto = detail::RecordCrypto::create();
  if (!g_state->server || !g_state->crypto) __builtin_trap();
  establish(*g_state);

  g_cid = new CidState;
  settings.connection_id = {6, 0x42};
  g_cid->server = ServerContext::create(settings, &error);
  ClientSettings client;
  client.psk_identity = "demo-device";
  client.psk_key = "demo-secret";
  client.connection_id = std::vector<std::byte>{};
  g_cid->client_context = ClientContext::create(std::move(client), &error);
  if (!g_cid->server || !g_cid->client_context) __builtin_trap();
  establish_cid(*g_cid);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  State& s = *g_state;
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  const auto now = std::chrono::steady_clock::now();

  // 1. Raw datagram: nothing may authenticate.
  s.out.clear();
  s.engine->on_datagram(input, s.out, now);
  if (!s.out.plaintexts.empty()) __builtin_trap();
  if (s.engine->state() != Engine::State::established) establish(s);

  // 2. The same records with valid protection: type, epoch, sequence and
  //    plaintext come from the input.
  std::vector<std::byte> sealed;
  std::span<const std::byte> rest = input;
  while (!rest.empty()) {
    const auto record = wire::next_record(rest, &rest);
    if (!record) break;
    const auto plaintext = record->fragment.first(std::min(record->fragment.size(), detail::max_plaintext_size));
    s.crypto->seal_record(*s.suite, s.client_keys, record->type, 1, record->sequence, plaintext, &sealed);
  }
  if (!sealed.empty()) {
    s.out.clear();
    s.engine->on_datagram(sealed, s.out, now);
    if (s.engine->state() != Engine::State::established) establish(s);
  }

  // 3. The Connection ID session: raw, then as tls12_cid records that authenticate.
  fuzz_cid(input, *s.crypto, s.out);

  // 4. Saved state.
  if (const auto state = deserialize(input)) {
    // The format has one encoding per version; older versions are read and written back as
    // version 4: version 1 lacks the certificate count (1 byte), 1 and 2 the CID lengths (2 bytes),
    // 1 to 3 the registry_keyed flag (1 byte).
    const auto version = size > 4 ? std::to_integer<int>(input[4]) : 4;
    const std::size_t grown = (version == 1 ? 1 : 0) + (version < 3 ? 2 : 0) + (version < 4 ? 1 : 0);
    if (serialize(*state).size() != size + grown) __builtin_trap();
    auto imported = Engine::import_state(*s.server, *state, 1000);
    if (imported) {
      s.out.clear();
      imported->on_datagram(input, s.out, now);
      s.out.clear();
      imported->close(s.out);
    }
  }
  return 0;
}
