// fuzz_dtls_lean — arbitrary bytes into the lean DTLS record layer:
// - an established Engine that already switched to the lean layer (built at
//   init by a real in-memory handshake with an OpenSSL client plus one record
//   each way; rebuilt whenever an input closes it), fed the input as a datagram;
// - the same datagram with its records re-sealed under the session's real
//   client keys, so the fuzzer reaches the plaintext handling (alerts,
//   handshake, application data) behind authentication;
// - deserialize() of saved session state, and import of whatever it accepts.
// Invariants: no crash/UB, and nothing opened from the raw input (which
// cannot carry a valid tag) ever reaches Output::plaintexts.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

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

State* g_state = nullptr;
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

  // 3. Saved state.
  if (const auto state = deserialize(input)) {
    // The format has one encoding per version; version 1 (no certificate count) is read and
    // written back as version 2, one byte longer.
    const bool version1 = size > 4 && input[4] == std::byte{1};
    if (serialize(*state).size() != size + (version1 ? 1 : 0)) __builtin_trap();
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
