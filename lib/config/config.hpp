// coapgw::config — the gateway's configuration as plain structs with defaults.
//
// This module owns the YAML contract of DESIGN.md ("Configuration contract"):
// one function per section turns YAML into these structs, unknown keys are
// rejected, and a single validation pass collects every problem with its key
// path ("routes[1].timeout") so that an operator fixes a file in one round
// instead of one error per restart. Exceptions are used here only because
// config load happens at start-up or reload, never on the data path.
// yaml-cpp stays behind the .cpp files: callers see only these structs.
#pragma once

#include <chrono>
#include <memory>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.hpp"
#include "common/key_table.hpp"
#include "common/log.hpp"
#include "common/secret.hpp"

namespace coapgw::config {

using Duration = std::chrono::milliseconds;

struct LogConfig {
  log::Level level = log::Level::info;
  log::Format format = log::Format::text;
};

struct ListenConfig {
  // An empty list disables that listener.
  std::vector<Address> coap{*Address::parse("127.0.0.1:5683")};
  std::vector<Address> coaps{*Address::parse("127.0.0.1:5684")};
  std::optional<Address> admin{Address::parse("127.0.0.1:9683")};  // "" disables admin
  std::optional<Address> api{Address::parse("127.0.0.1:9684")};    // "" disables the backend API
  // CoAP over TCP, TLS and WebSockets (RFC 8323); none by default (config/stream.cpp).
  std::vector<Address> coap_tcp, coaps_tcp, coap_ws, coaps_ws;
};

struct PskKey {
  std::string identity;
  SecretString key;  // raw key bytes: key_hex is already decoded; wiped when let go
};

struct PskConfig {
  std::string hint = "coapgw";
  std::vector<PskKey> keys;  // the inline `keys`
  std::string keys_file;  // as written; resolve with resolve_path() to re-read on SIGHUP
  // The keys loaded from keys_file (empty without one), in one compact table that the PskStore
  // built from this config shares: a million keys are held once. No identity is in both.
  std::shared_ptr<const KeyTable> file_keys = std::make_shared<const KeyTable>();
  // Device registry (issue 16): identities not in `keys` are fetched with GET from `url`
  // ("{identity}" is replaced by the percent-encoded identity); "" = no registry.
  struct Lookup {
    std::string url;
    Duration timeout{2000};
    Duration cache_ttl{300000};
    Duration negative_ttl{30000};
    std::size_t max_in_flight = 256;  // lookups in flight, all workers together
  } lookup;
};

struct PkiConfig {
  std::string cert, private_key, ca;  // as written; resolve with resolve_path()
};

struct DtlsConfig {
  PskConfig psk;
  PkiConfig pki;
  std::string ciphers;
  Duration handshake_timeout{30000};
  std::size_t max_handshakes = 1000;
  std::size_t max_handshakes_per_ip = 100;  // handshakes in progress from one IP address; 0 = no bound
  // Addresses whose handshakes keep failing are refused for a while (issue 11).
  struct HandshakeBackoff {
    std::size_t after = 3;  // consecutive failures before the back-off starts; 0 = never
    Duration initial{1000};
    Duration max{60000};
    std::size_t max_addresses = 10000;  // per worker
  } handshake_backoff;
  // RFC 9146 Connection IDs we issue to clients that offer the extension (issue 13).
  struct ConnectionId {
    std::size_t length = 6;   // 0 = never negotiate; else 3..32 bytes
    std::uint8_t node_id = 0;  // first byte of every CID we issue
  } connection_id;
  // RFC 5077 session tickets: devices whose session is gone resume without a full handshake.
  struct Tickets {
    bool enabled = true;
    // "" = one secret drawn at start-up and kept in memory; else a file of hex secrets, one a line
    // (the first seals new tickets, all are accepted), shared by gateways that resume each other's.
    std::string key_file;
    Duration rotation{std::chrono::hours(12)};  // ticket keys change every period; a ticket lives 1..2
    std::vector<SecretString> secrets;          // from key_file, decoded
  } tickets;
};

struct PersistConfig {
  std::string file;
  Duration max_age{std::chrono::hours(12)};
};

struct SessionsConfig {
  std::size_t max = 100000;
  Duration idle_timeout{300000};
  PersistConfig persist;
};

// stream: bounds of the RFC 8323 listeners (listen.coap_tcp ...); message size is coap.max_message_size
// (sent as the CSM's Max-Message-Size), the idle timeout sessions.idle_timeout.
struct StreamConfig {
  std::size_t max_connections = 10000;  // all stream connections of the process, split across workers
  std::size_t max_in_flight = 32;       // requests per connection not yet answered; above: 5.03
  Duration csm_timeout{10000};          // the peer's CSM must arrive within this
  Duration frame_timeout{10000};        // a begun message must complete within this (slow loris)
  std::size_t max_write_queue = 262144; // bytes waiting for a peer that does not read (slow reader)
  Duration write_timeout{10000};        // flushing before a close may take this long
};

struct ShutdownConfig {
  Duration drain_timeout{10000};
};

struct CoapConfig {
  Duration ack_timeout{2000};
  double ack_random_factor = 1.5;
  unsigned max_retransmit = 4;
  std::size_t max_message_size = 1152;
  std::size_t max_body_size = 65536;       // block-wise reassembly bound per request
  std::size_t max_reassemblies = 1000;     // concurrent Block1 reassemblies per worker
  std::size_t max_reassemblies_per_session = 4;    // ... per session
  std::size_t max_block_cache_bytes = 64u << 20;   // Block2 answer bodies kept per worker
  std::size_t max_block_answers_per_session = 4;   // ... per session (its oldest makes room)
  Duration separate_response_after{1000};  // then: empty ACK now, separate response later
};

struct RoutePsk {
  std::string identity;
  SecretString key;  // raw key bytes: key_hex is already decoded; wiped when let go
};

struct Route {
  std::string prefix;
  std::string upstream;
  bool strip_prefix = false;
  Duration timeout{5000};
  std::size_t max_in_flight = 64;
  std::string ca_file;  // https upstreams; "" = system store
  std::optional<RoutePsk> psk;  // coaps upstreams
};

struct AdminConfig {
  std::size_t max_connections = 64;
  Duration request_timeout{10000};
  std::size_t max_request_bytes = 8192;
};

// One bearer token of the backend API (api.tokens, api.tokens_file).
struct ApiToken {
  std::string name;    // who it belongs to, for logs; never the secret
  SecretString token;  // compared in constant time by lib/api
};

struct ApiConfig {
  // The effective token set: the inline `tokens` followed by those loaded
  // from tokens_file, so the API builds its token set from this list alone.
  std::vector<ApiToken> tokens;
  std::string tokens_file;  // as written; resolve with resolve_path() to re-read on SIGHUP
  std::size_t max_queued_per_device = 16;  // queue_for requests waiting per device
  std::size_t max_queued = 10000;          // ... for all devices together
  std::size_t max_connections = 64;
  Duration request_timeout{10000};         // reading one request, also the keep-alive idle time
  std::size_t max_request_bytes = 65536;   // request line + headers + body; above it 413
  // api.groups: POST /v1/groups/requests (multicast, RFC 7252 §8).
  struct Groups {
    std::optional<Address> interface;  // address of the interface to send from (bound, IP_MULTICAST_IF); none = the kernel's route
    unsigned hops = 1;                 // IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS (0..255)
    std::size_t max_responses = 256;   // responses kept per group request; beyond, dropped and counted
    std::size_t max_in_flight = 16;    // group requests collecting at once; beyond, refused (503)
  } groups;
};

// devices: per-device policy (issue 16). rate_limit: a token bucket per DTLS identity (plain CoAP:
// per address) on the worker that holds the session; 0 = unlimited.
struct DevicesConfig {
  struct RateLimit {
    double requests_per_second = 0;
    std::size_t burst = 0;  // 0 with a rate: one second's worth, at least 1
  } rate_limit;
};

struct Config {
  unsigned threads = 0;  // 0 = one worker per core
  LogConfig log;
  ListenConfig listen;
  DtlsConfig dtls;
  SessionsConfig sessions;
  StreamConfig stream;
  ShutdownConfig shutdown;
  CoapConfig coap;
  std::vector<Route> routes;
  AdminConfig admin;
  ApiConfig api;
  DevicesConfig devices;
  std::string source_path;  // file it came from, for resolving relative paths
};

struct ConfigIssue {
  std::string key_path;  // like "routes[1].timeout"; "" for the file as a whole
  std::string message;
};

// Carries every issue found; what() lists them one per line as "key: message".
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<ConfigIssue> issues);
  std::vector<ConfigIssue> issues;
};

// "300s" "5m" "250ms" "1h" "1.5s" -> milliseconds (rounded). A missing or
// unknown unit, a sign, spaces or an absurd value (> 10 years) -> nullopt.
std::optional<Duration> parse_duration(std::string_view text);

// Reads and validates a config file. Throws ConfigError, also for an
// unreadable file or a YAML syntax error (key_path "", line/column in message).
Config load_config_file(const std::string& path);

// Same, from text; source_path anchors relative paths (keys_file, pki files,
// file: sinks, persist file) and may be "" (then they resolve against the cwd).
Config parse_config(std::string_view yaml_text, const std::string& source_path = "");

// Loads a PSK keys file: its top level is the same list as dtls.psk.keys.
// Throws ConfigError with key paths such as "[1].key_hex". The file must be a
// regular file (a symlink to one is followed) that others cannot read or
// write (mode & 007 == 0: 0600 or root:coapgw 0640), checked on the open
// descriptor; otherwise ConfigError names the mode.
std::vector<PskKey> load_psk_keys_file(const std::string& path);

// Loads an API tokens file: its top level is the same list as api.tokens,
// with the same file checks and errors as load_psk_keys_file.
std::vector<ApiToken> load_api_tokens_file(const std::string& path);

// Resolves `path` against the directory of config.source_path; absolute paths
// and "" come back unchanged.
std::string resolve_path(const Config& config, const std::string& path);

}  // namespace coapgw::config
