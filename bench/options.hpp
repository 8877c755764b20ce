// coapgw-bench options — the command line of the load tool as one plain struct.
//
// Owns parsing and validation of the flags; every count and duration the tool uses is bounded
// here, so the rest of the tool can trust the values. Errors are reported once, at start-up.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace coapgw::bench {

enum class Mode : std::uint8_t { requests, handshake, hold };

struct Options {
  Mode mode = Mode::requests;
  bool dtls = false;
  // RFC 9146: DTLS through coapgw's own engine in the client role, offering the connection_id
  // extension (the server issues a CID; our records carry it). Implies dtls.
  bool cid = false;
  double rebind = 0.0;  // every S seconds each device sends from a new source port (needs cid); 0 = never
  // After a rebind the old socket stays open, unread, this long, so that its port is not handed to
  // another device while a balancer may still map it to the old session (a NAT's hold-down).
  double rebind_hold = 0.0;
  std::string server = "127.0.0.1:5683";  // IPv4 address:port of the server
  std::string path = "x";                 // Uri-Path of each GET, segments split on '/'
  std::uint32_t devices = 100;            // sessions (requests, hold) or handshake slots (handshake)
  std::uint32_t outstanding = 1;          // K: CON GETs in flight per session
  double duration = 5.0;                  // seconds of measurement (hold: idle time)
  double timeout = 2.0;                   // a request not answered by then counts as a timeout
  double handshake_timeout = 30.0;        // a DTLS handshake not done by then is a failure
  // > 0: set-up (hold, requests) ends this many seconds after it began, and until then a device
  // whose handshake attempt or first GET failed backs off and tries again with a new ClientHello
  // (retry_policy.hpp). 0: the old deadline (devices / open rate + timeouts), no retries.
  double setup_deadline = 0.0;
  double retry_backoff = 2.0;             // first back-off of a retrying device (doubles, up to 64 s)
  double rate = 0.0;                      // offered requests/s over all processes; 0 = closed loop
  double open_rate = 5000.0;              // sessions opened per second over all processes
  std::uint32_t concurrency = 200;        // sessions being opened at once per process
  std::uint32_t verify_concurrency = 0;   // hold: verify GETs in flight at once per process (0: concurrency)
  double keepalive = 0.0;                 // hold: one request per session every S seconds; 0 = none
  std::uint32_t verify_from = 0;          // hold: verify only devices from this global index on
  std::uint32_t procs = 1;                // worker processes (each one epoll thread)
  int server_pid = 0;                     // > 0: sample that process's CPU time and RSS
  std::string cipher = "PSK-AES128-CCM8";
  std::string identity = "bench";
  std::string key = "bench-secret";
  // > 0: handshakes take turns among N identities "<identity>-<n>" with keys "<key>-<n>" (a device
  // registry's devices, issue 16); 0: every session uses --identity and --key.
  std::uint32_t identities = 0;
  // Downlink bench: each DTLS device presents "<identity>-<slot>" (one identity per device, so the
  // gateway's downlink API can name each), and every device answers the gateway's requests to it
  // (a CON with a piggybacked 2.05 "ok", a NON with a NON 2.05).
  bool identity_per_device = false;
  bool serve = false;
  // hold: at the end the devices vanish without close_notify (like devices powered off), so their
  // gateway sessions stay and its closed-session counters show only what the run itself closed.
  bool leave_open = false;
  std::string source_base = "127.0.0.1";  // first source address; more follow every 50,000 devices
  std::uint16_t source_port_base = 10000; // source ports [base, base + 50,000) per address
};

inline constexpr std::uint32_t devices_per_address = 50000;
inline constexpr std::uint32_t max_devices = 2000000;
inline constexpr std::uint32_t max_outstanding = 64;
inline constexpr std::uint32_t max_procs = 64;

// Parses argv; on a bad flag returns nullopt and sets `error`. `--help` sets error to the usage.
std::optional<Options> parse_options(int argc, char** argv, std::string& error);
std::string usage();
const char* mode_name(Mode mode);

}  // namespace coapgw::bench
