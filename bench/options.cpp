// coapgw-bench options — flag parsing and bounds (see options.hpp).
#include "options.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <string_view>

namespace coapgw::bench {
namespace {

bool parse_double(std::string_view text, double low, double high, double& out) {
  char* end = nullptr;
  const std::string copy(text);
  const double value = std::strtod(copy.c_str(), &end);
  if (end == copy.c_str() || *end != '\0' || !std::isfinite(value) || value < low || value > high) {
    return false;
  }
  out = value;
  return true;
}

template <typename T>
bool parse_integer(std::string_view text, T low, T high, T& out) {
  T value{};
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || value < low || value > high) {
    return false;
  }
  out = value;
  return true;
}

}  // namespace

const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::requests: return "requests";
    case Mode::handshake: return "handshake";
    case Mode::hold: return "hold";
  }
  return "?";
}

std::string usage() {
  return R"(coapgw-bench: CoAP / CoAP-over-DTLS load generator

  coapgw-bench --mode requests|handshake|hold [--dtls] --server A:P [options]

  --mode M              requests: K CON GETs outstanding per session for --duration s
                        handshake: new DTLS sessions continuously (cookie exchange, one GET, close)
                        hold: open --devices sessions, keep them idle --duration s, then verify each
  --dtls                DTLS 1.2 PSK instead of plain CoAP
  --cid                 DTLS with an RFC 9146 Connection ID (coapgw's engine as the client; implies --dtls)
  --rebind S            requests, hold: every S seconds each device moves to a new source port (a NAT
                        rebinding) and goes on on its session; needs --cid. Default 0 (never)
  --rebind-hold S       the old socket of a rebind stays open (unread) S seconds, so the kernel gives
                        its port to no other device meanwhile (a NAT's hold-down; behind a balancer
                        that maps 4-tuples, see README "Running several gateways"). Default 0
  --server A:P          server address (IPv4), default 127.0.0.1:5683
  --path P              Uri-Path of the GET, default x (4.04 on a gateway without routes)
  --devices N           sessions, each its own UDP socket and source port (handshake: parallel slots)
  --outstanding K       CON GETs in flight per session (requests mode), default 1, max 64
  --duration S          measurement (hold: idle) seconds, default 5
  --timeout S           request timeout, default 2 (no CON retransmission: a timeout is counted)
  --handshake-timeout S default 30 (DTLS retransmits lost flights meanwhile); per attempt with
                        --setup-deadline
  --setup-deadline S    hold, requests: set-up ends S s after it began; until then a device whose
                        handshake or first GET failed backs off and retries with a new ClientHello
                        from a new source port (RFC 6347). Default 0 (no retries, the old deadline)
  --retry-backoff S     first back-off of a retrying device, doubled per failure up to 64 s, each
                        drawn in [S/2, S). Default 2
  --rate R              offered requests/s in total (requests mode), 0 = closed loop (default)
  --open-rate R         sessions opened per second in total, default 5000
  --concurrency C       sessions being opened at once per process, default 200
  --verify-concurrency V  hold: verify GETs in flight at once per process, default C
  --keepalive S         hold: one GET per session every S seconds, default 0 (none)
  --verify-from N       hold: verify only devices N.. (global index), default 0 (all); the
                        earlier ones are held but not contacted again (e.g. expected evicted)
  --procs P             processes, default 1 (raised when the file limit needs it)
  --server-pid PID      measure that process's CPU time (utime+stime) and VmRSS
  --cipher C            OpenSSL cipher list, default PSK-AES128-CCM8
  --identity I --key K  PSK identity and key, default bench / bench-secret
  --identities N        handshakes take turns among N identities I-0..I-(N-1), keys K-0..K-(N-1)
                        (devices in a registry; not with --cid), default 0 (only I)
  --identity-per-device DTLS device N presents identity I-N (N = its slot), same key
  --leave-open          hold: at the end devices go without close_notify (their gateway sessions stay)
  --serve               devices answer the gateway's downlink requests with 2.05 "ok"
  --source-base A       first source address, default 127.0.0.1 (next one every 50,000 devices)
  --source-port-base P  first source port per address, default 10000
)";
}

std::optional<Options> parse_options(int argc, char** argv, std::string& error) {
  Options o;
  using Setter = std::function<bool(std::string_view)>;
  const std::map<std::string, Setter, std::less<>> setters = {
      {"--mode",
       [&](std::string_view v) {
         if (v == "requests") o.mode = Mode::requests;
         else if (v == "handshake") o.mode = Mode::handshake;
         else if (v == "hold") o.mode = Mode::hold;
         else return false;
         return true;
       }},
      {"--server", [&](std::string_view v) { o.server = v; return !v.empty(); }},
      {"--path", [&](std::string_view v) { o.path = v; return v.size() < 200; }},
      {"--devices", [&](std::string_view v) { return parse_integer<std::uint32_t>(v, 1, max_devices, o.devices); }},
      {"--outstanding", [&](std::string_view v) { return parse_integer<std::uint32_t>(v, 1, max_outstanding, o.outstanding); }},
      {"--duration", [&](std::string_view v) { return parse_double(v, 0.1, 86400, o.duration); }},
      {"--timeout", [&](std::string_view v) { return parse_double(v, 0.01, 600, o.timeout); }},
      {"--handshake-timeout", [&](std::string_view v) { return parse_double(v, 0.1, 600, o.handshake_timeout); }},
      {"--setup-deadline", [&](std::string_view v) { return parse_double(v, 0, 86400, o.setup_deadline); }},
      {"--retry-backoff", [&](std::string_view v) { return parse_double(v, 0.01, 64, o.retry_backoff); }},
      {"--rate", [&](std::string_view v) { return parse_double(v, 0, 1e8, o.rate); }},
      {"--open-rate", [&](std::string_view v) { return parse_double(v, 1, 1e7, o.open_rate); }},
      {"--concurrency", [&](std::string_view v) { return parse_integer<std::uint32_t>(v, 1, 100000, o.concurrency); }},
      {"--verify-concurrency",
       [&](std::string_view v) { return parse_integer<std::uint32_t>(v, 1, 100000, o.verify_concurrency); }},
      {"--rebind", [&](std::string_view v) { return parse_double(v, 0, 86400, o.rebind); }},
      {"--rebind-hold", [&](std::string_view v) { return parse_double(v, 0, 3600, o.rebind_hold); }},
      {"--keepalive", [&](std::string_view v) { return parse_double(v, 0, 86400, o.keepalive); }},
      {"--verify-from", [&](std::string_view v) { return parse_integer<std::uint32_t>(v, 0, max_devices, o.verify_from); }},
      {"--procs", [&](std::string_view v) { return parse_integer<std::uint32_t>(v, 1, max_procs, o.procs); }},
      {"--server-pid", [&](std::string_view v) { return parse_integer<int>(v, 1, 1 << 30, o.server_pid); }},
      {"--cipher", [&](std::string_view v) { o.cipher = v; return !v.empty(); }},
      {"--identity", [&](std::string_view v) { o.identity = v; return !v.empty() && v.size() <= 128; }},
      {"--key", [&](std::string_view v) { o.key = v; return !v.empty() && v.size() <= 64; }},
      {"--identities", [&](std::string_view v) { return parse_integer<std::uint32_t>(v, 0, 10'000'000, o.identities); }},
      {"--source-base", [&](std::string_view v) { o.source_base = v; return !v.empty(); }},
      {"--source-port-base", [&](std::string_view v) { return parse_integer<std::uint16_t>(v, 1024, 15000, o.source_port_base); }},
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      error = usage();
      return std::nullopt;
    }
    if (arg == "--dtls") {
      o.dtls = true;
      continue;
    }
    if (arg == "--identity-per-device") {
      o.identity_per_device = true;
      continue;
    }
    if (arg == "--leave-open") {
      o.leave_open = true;
      continue;
    }
    if (arg == "--serve") {
      o.serve = true;
      continue;
    }
    if (arg == "--cid") {
      o.dtls = o.cid = true;
      continue;
    }
    std::string_view value;
    bool has_value = false;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const auto it = setters.find(arg);
    if (it == setters.end()) {
      error = "unknown option " + std::string(arg);
      return std::nullopt;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        error = "option " + std::string(arg) + " needs a value";
        return std::nullopt;
      }
      value = argv[++i];
    }
    if (!it->second(value)) {
      error = "bad value for " + std::string(arg) + ": " + std::string(value);
      return std::nullopt;
    }
  }
  if (o.rebind > 0 && !o.cid) {
    error = "--rebind needs --cid (without a Connection ID a rebound device has no session)";
    return std::nullopt;
  }
  if (o.mode == Mode::handshake && !o.dtls) {
    error = "--mode handshake needs --dtls";
    return std::nullopt;
  }
  return o;
}

}  // namespace coapgw::bench
