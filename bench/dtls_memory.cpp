// coapgw_dtls_memory — resident memory per established DTLS server engine.
//
// Creates N (argv[1], default 10000) server engines through real in-memory
// PSK handshakes with OpenSSL clients, then (unless argv[3] is 0) one
// application record each way so the peer proves its keys and the engine
// switches to the lean record layer and frees its SSL object. Frees the
// clients and prints the RSS growth divided by N. Compare with libcoap
// (about 43 KB per session here). argv[4] = "cid": the clients are coapgw's engine in the client
// role offering an RFC 9146 Connection ID, which the server issues (6 bytes), so each server
// engine keeps its CID; "engine": the same clients, the server issues no CID (the baseline for
// "cid"). Both also print the bytes on the wire per handshake + request + answer. "inflight": OpenSSL
// on the crypto heap (dtls/crypto_heap.hpp); N handshakes are taken as far as the server's first
// flight after the cookie (ServerHello .. ServerHelloDone) and left there, as in a storm, and the
// heap bytes the server side holds per handshake in flight are printed.
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "dtls/client_context.hpp"
#include "dtls/crypto_heap.hpp"
#include "test_peer.hpp"

namespace {

using coapgw::dtls::Engine;
using coapgw::dtls::Output;

// One engine-client handshake with a Connection ID, a request and its answer; the server engine
// (lean) or nullptr. *wire += every datagram's size, both directions.
std::unique_ptr<Engine> cid_session(coapgw::dtls::ServerContext& server, coapgw::dtls::ClientContext& client,
                                    const coapgw::Address& peer, long i, std::size_t* wire) {
  const auto now = std::chrono::steady_clock::now();
  Output first;
  auto device = client.connect(peer, first, now);
  std::unique_ptr<Engine> engine;
  std::vector<std::vector<std::byte>> to_server = std::move(first.datagrams);
  for (int round = 0; round < 20 && !to_server.empty(); ++round) {
    std::vector<std::vector<std::byte>> to_client;
    for (auto& d : to_server) {
      *wire += d.size();
      Output out;
      if (!engine) {
        if (auto r = server.on_hello(peer, d, out, now); r.engine) engine = std::move(r.engine);
      } else {
        engine->on_datagram(d, out, now);
      }
      for (auto& o : out.datagrams) to_client.push_back(std::move(o));
    }
    to_server.clear();
    for (auto& d : to_client) {
      *wire += d.size();
      Output out;
      device->on_datagram(d, out, now);
      for (auto& o : out.datagrams) to_server.push_back(std::move(o));
    }
    if (to_server.empty() && device->state() == Engine::State::established && engine &&
        engine->state() == Engine::State::established && !engine->lean()) {
      Output out;
      if (!device->send(coapgw::dtls::test::to_bytes("GET /temp " + std::to_string(i)), out)) return nullptr;
      to_server = std::move(out.datagrams);
    }
  }
  if (!engine || !engine->lean() || engine->connection_id().size() != server.settings().connection_id.length) return nullptr;
  Output answer;
  if (!engine->send(coapgw::dtls::test::to_bytes("2.05 " + std::to_string(i)), answer)) return nullptr;
  for (auto& d : answer.datagrams) *wire += d.size();
  return engine;
}

// Server engines left after their first flight; returns the crypto heap's bytes they hold, or -1.
long inflight(coapgw::dtls::ServerContext& server, coapgw::dtls::ClientContext& client, long count,
              std::vector<std::unique_ptr<coapgw::dtls::Engine>>& servers,
              std::vector<std::unique_ptr<coapgw::dtls::Engine>>& devices) {
  using namespace coapgw::dtls;
  const auto now = std::chrono::steady_clock::now();
  long held = 0;
  for (long i = 0; i < count; ++i) {
    const auto peer = coapgw::Address::v4({10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                                           static_cast<std::uint8_t>(i)},
                                          static_cast<std::uint16_t>(1024 + i % 60000));
    Output hello;
    auto device = client.connect(peer, hello, now);
    if (!device || hello.datagrams.empty()) return -1;
    Output verify;
    server.on_hello(peer, hello.datagrams[0], verify, now);  // HelloVerifyRequest: no state
    if (verify.datagrams.empty()) return -1;
    Output again;
    device->on_datagram(verify.datagrams[0], again, now);
    if (again.datagrams.empty()) return -1;
    Output flight;
    const auto before = static_cast<long>(crypto_heap_stats()->live_bytes);
    auto r = server.on_hello(peer, again.datagrams[0], flight, now);
    held += static_cast<long>(crypto_heap_stats()->live_bytes) - before;
    if (!r.engine || flight.datagrams.empty()) return -1;
    servers.push_back(std::move(r.engine));
    devices.push_back(std::move(device));
  }
  return held;
}

long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace coapgw::dtls;
  const long count = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 10000;
  const std::string cipher = argc > 2 ? argv[2] : "PSK-AES128-CCM8";
  const bool exchange = argc > 3 ? std::strtol(argv[3], nullptr, 10) != 0 : true;
  const std::string client_kind = argc > 4 ? argv[4] : "";
  const bool in_flight = client_kind == "inflight";
  if (in_flight && !install_crypto_heap()) {
    std::fprintf(stderr, "the crypto heap could not be installed\n");
    return 1;
  }
  const bool cid = client_kind == "cid" || client_kind == "engine" || in_flight;
  if (count <= 0) {
    std::fprintf(stderr, "usage: %s [sessions] [client cipher] [exchange records: 1|0] [cid]\n", argv[0]);
    return 1;
  }
  auto store = std::make_shared<PskStore>();
  store->add("demo-device", "demo-secret");
  ServerSettings settings;
  settings.psk = store;
  settings.ciphers = "PSK-AES128-CCM8:PSK-AES128-CCM:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:PSK-CHACHA20-POLY1305";
  if (client_kind == "cid") settings.connection_id = {6, 0};
  std::string error;
  auto server = ServerContext::create(settings, &error);
  std::unique_ptr<ClientContext> cid_client;
  if (cid) {
    ClientSettings c;
    c.psk_identity = "demo-device";
    c.psk_key = "demo-secret";
    c.ciphers = cipher;
    c.connection_id = std::vector<std::byte>{};
    cid_client = ClientContext::create(std::move(c), &error);
    if (!cid_client) {
      std::fprintf(stderr, "%s\n", error.c_str());
      return 1;
    }
  }
  if (!server) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  std::vector<std::unique_ptr<Engine>> engines;
  engines.reserve(static_cast<std::size_t>(count));
  if (in_flight) {
    std::vector<std::unique_ptr<Engine>> devices;
    const long held = inflight(*server, *cid_client, count, engines, devices);
    if (held < 0) {
      std::fprintf(stderr, "a handshake did not reach the server's first flight\n");
      return 2;
    }
    std::printf("handshakes in flight (server waiting for the client's second flight): %ld\n"
                "crypto heap bytes held by the server side: %ld (%.0f bytes, %.1f KB per handshake)\n",
                count, held, double(held) / double(count), double(held) / double(count) / 1024.0);
    const auto s = *crypto_heap_stats();
    std::printf("crypto heap: %zu bytes live, %zu spans in use, %zu free, %zu allocations it passed to the C library\n",
                s.live_bytes, s.spans_in_use, s.spans_free, s.fallback_allocations);
    return 0;
  }
  // Warm up once so lazily initialised OpenSSL state is not charged to sessions.
  {
    test::Client client(test::ClientOptions{});
    auto r = test::handshake(*server, client, coapgw::Address::v4({10, 0, 0, 1}, 1), std::chrono::steady_clock::now());
  }
  malloc_trim(0);
  const long before = resident_bytes();
  std::size_t estimate = 0;
  std::size_t wire = 0;
  long lean = 0;
  for (long i = 0; cid && i < count; ++i) {
    const auto peer = coapgw::Address::v4({10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                                           static_cast<std::uint8_t>(i)},
                                          static_cast<std::uint16_t>(1024 + i % 60000));
    auto engine = cid_session(*server, *cid_client, peer, i, &wire);
    if (!engine) {
      std::fprintf(stderr, "cid session %ld failed\n", i);
      return 2;
    }
    ++lean;
    estimate += engine->memory_estimate();
    engines.push_back(std::move(engine));
  }
  for (long i = 0; !cid && i < count; ++i) {
    test::ClientOptions options;
    options.ciphers = cipher;
    test::Client client(options);
    const auto peer = coapgw::Address::v4({10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                                           static_cast<std::uint8_t>(i)},
                                          static_cast<std::uint16_t>(1024 + i % 60000));
    auto r = test::handshake(*server, client, peer, std::chrono::steady_clock::now());
    if (!r.engine || r.engine->state() != Engine::State::established) {
      std::fprintf(stderr, "handshake %ld failed\n", i);
      return 2;
    }
    if (exchange) {
      // A request and its answer: the request proves the client's keys.
      Output out;
      const std::string request = "GET /temp " + std::to_string(i);
      if (!client.write(request)) return 3;
      r.engine->on_datagram(client.take(), out, std::chrono::steady_clock::now());
      const std::string answer = "2.05 " + std::to_string(i);
      if (out.plaintexts.size() != 1 || !r.engine->send(test::to_bytes(answer), out)) return 3;
      client.receive(out.datagrams);
      if (client.received().size() != 1 || client.received()[0] != answer) {
        std::fprintf(stderr, "exchange %ld failed\n", i);
        return 3;
      }
    }
    if (r.engine->lean()) ++lean;
    estimate += r.engine->memory_estimate();
    engines.push_back(std::move(r.engine));
  }
  malloc_trim(0);
  const long after = resident_bytes();
  std::printf("lean sessions (SSL object freed): %ld\n", lean);
  if (cid) {
    std::printf("connection id: %zu bytes; wire bytes per handshake + request + answer: %zu\n",
                server->settings().connection_id.length, wire / static_cast<std::size_t>(count));
  }
  std::printf("sessions: %ld\ncipher: %s\nrss delta: %ld bytes\nper established engine: %.0f bytes (%.1f KB)\n"
              "engine memory_estimate average: %zu bytes\n",
              count, cipher.c_str(), after - before, double(after - before) / double(count),
              double(after - before) / double(count) / 1024.0, estimate / static_cast<std::size_t>(count));
  return 0;
}
