// coapgw_dtls_memory — resident memory per established DTLS server engine.
//
// Creates N (argv[1], default 10000) server engines through real in-memory
// PSK handshakes with OpenSSL clients, then (unless argv[3] is 0) one
// application record each way so the peer proves its keys and the engine
// switches to the lean record layer and frees its SSL object. Frees the
// clients and prints the RSS growth divided by N. Compare with libcoap
// (about 43 KB per session here).
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "test_peer.hpp"

namespace {

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
  if (count <= 0) {
    std::fprintf(stderr, "usage: %s [sessions] [client cipher] [exchange records: 1|0]\n", argv[0]);
    return 1;
  }
  auto store = std::make_shared<PskStore>();
  store->add("demo-device", "demo-secret");
  ServerSettings settings;
  settings.psk = store;
  settings.ciphers = "PSK-AES128-CCM8:PSK-AES128-CCM:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:PSK-CHACHA20-POLY1305";
  std::string error;
  auto server = ServerContext::create(settings, &error);
  if (!server) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  std::vector<std::unique_ptr<Engine>> engines;
  engines.reserve(static_cast<std::size_t>(count));
  // Warm up once so lazily initialised OpenSSL state is not charged to sessions.
  {
    test::Client client(test::ClientOptions{});
    auto r = test::handshake(*server, client, coapgw::Address::v4({10, 0, 0, 1}, 1), std::chrono::steady_clock::now());
  }
  malloc_trim(0);
  const long before = resident_bytes();
  std::size_t estimate = 0;
  long lean = 0;
  for (long i = 0; i < count; ++i) {
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
  std::printf("sessions: %ld\ncipher: %s\nrss delta: %ld bytes\nper established engine: %.0f bytes (%.1f KB)\n"
              "engine memory_estimate average: %zu bytes\n",
              count, cipher.c_str(), after - before, double(after - before) / double(count),
              double(after - before) / double(count) / 1024.0, estimate / static_cast<std::size_t>(count));
  return 0;
}
