// Parsing: defaults, every key, durations, PSK keys and keys files, the repo's sample files.
#include <gtest/gtest.h>

#include <filesystem>

#include "config/config.hpp"
#include "temp_dir.hpp"

namespace coapgw::config {
namespace {

using namespace std::chrono_literals;
using test::TempDir;

TEST(ConfigDefaults, EmptyDocumentGivesEveryDefault) {
  for (const char* text : {"", "# only a comment\n", "{}"}) {
    Config c = parse_config(text);
    EXPECT_EQ(c.threads, 0u);
    EXPECT_EQ(c.log.level, log::Level::info);
    EXPECT_EQ(c.log.format, log::Format::text);
    ASSERT_EQ(c.listen.coap.size(), 1u);
    EXPECT_EQ(c.listen.coap[0].to_string(), "127.0.0.1:5683");
    ASSERT_EQ(c.listen.coaps.size(), 1u);
    EXPECT_EQ(c.listen.coaps[0].to_string(), "127.0.0.1:5684");
    ASSERT_TRUE(c.listen.admin.has_value());
    EXPECT_EQ(c.listen.admin->to_string(), "127.0.0.1:9683");
    EXPECT_EQ(c.dtls.psk.hint, "coapgw");
    EXPECT_TRUE(c.dtls.psk.keys.empty());
    EXPECT_EQ(c.dtls.psk.keys_file, "");
    EXPECT_EQ(c.dtls.pki.cert, "");
    EXPECT_EQ(c.dtls.ciphers, "");
    EXPECT_EQ(c.dtls.handshake_timeout, 30s);
    EXPECT_EQ(c.dtls.max_handshakes, 1000u);
    EXPECT_EQ(c.dtls.connection_id.length, 6u);
    EXPECT_EQ(c.dtls.connection_id.node_id, 0);
    EXPECT_EQ(c.sessions.max, 100000u);
    EXPECT_EQ(c.sessions.idle_timeout, 300s);
    EXPECT_EQ(c.sessions.persist.file, "");
    EXPECT_EQ(c.sessions.persist.max_age, 12h);
    EXPECT_EQ(c.shutdown.drain_timeout, 10s);
    EXPECT_EQ(c.coap.ack_timeout, 2s);
    EXPECT_DOUBLE_EQ(c.coap.ack_random_factor, 1.5);
    EXPECT_EQ(c.coap.max_retransmit, 4u);
    EXPECT_EQ(c.coap.max_message_size, 1152u);
    EXPECT_EQ(c.coap.max_body_size, 65536u);
    EXPECT_EQ(c.coap.max_reassemblies, 1000u);
    EXPECT_EQ(c.coap.separate_response_after, 1s);
    EXPECT_TRUE(c.routes.empty());
    EXPECT_EQ(c.admin.max_connections, 64u);
    EXPECT_EQ(c.admin.request_timeout, 10s);
    EXPECT_EQ(c.admin.max_request_bytes, 8192u);
  }
}

TEST(ConfigDefaults, EmptySectionsKeepDefaults) {
  Config c = parse_config("log:\ndtls:\n  psk:\nsessions: {}\ncoap:\nadmin:\n");
  EXPECT_EQ(c.log.level, log::Level::info);
  EXPECT_EQ(c.dtls.psk.hint, "coapgw");
  EXPECT_EQ(c.sessions.max, 100000u);
  EXPECT_EQ(c.admin.max_connections, 64u);
}

TEST(ConfigDefaults, RouteDefaults) {
  Config c = parse_config("routes:\n  - { prefix: /a, upstream: \"http://127.0.0.1:8000\" }\n");
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_FALSE(c.routes[0].strip_prefix);
  EXPECT_EQ(c.routes[0].timeout, 5s);
  EXPECT_EQ(c.routes[0].max_in_flight, 64u);
  EXPECT_EQ(c.routes[0].ca_file, "");
  EXPECT_FALSE(c.routes[0].psk.has_value());
}

TEST(ConfigParse, EveryKey) {
  TempDir dir;
  dir.write("cert.pem", "x");
  dir.write("key.pem", "x");
  dir.write("ca.pem", "x");
  dir.write("up-ca.pem", "x");
  auto path = dir.write("gw.yaml", R"(
threads: 4
log: { level: debug, format: json }
listen:
  coap: ["0.0.0.0:15683", "[::1]:15683"]
  coaps: ["127.0.0.2:15684"]
  admin: "[::1]:19683"
dtls:
  psk:
    hint: ""
    keys:
      - { identity: "a", key: "secret-a" }
      - { identity: "b", key_hex: "00ff10" }
    keys_file: ""
  pki: { cert: "cert.pem", private_key: "key.pem", ca: "ca.pem" }
  ciphers: "PSK-AES128-CCM8"
  handshake_timeout: 15s
  max_handshakes: 7
  connection_id: { length: 8, node_id: 200 }
sessions:
  max: 12
  idle_timeout: 5m
  persist: { file: "sessions.bin", max_age: 1h }
shutdown:
  drain_timeout: 0s
coap:
  ack_timeout: 1500ms
  ack_random_factor: 1.25
  max_retransmit: 0
  max_message_size: 512
  max_body_size: 4096
  max_reassemblies: 3
  max_reassemblies_per_session: 2
  max_block_cache_bytes: 100000
  max_block_answers_per_session: 5
  separate_response_after: 250ms
routes:
  - { prefix: "/t", upstream: "file:t.jsonl" }
  - prefix: "/api"
    upstream: "https://example.test/base"
    strip_prefix: true
    timeout: 1.5s
    max_in_flight: 2
    ca_file: "up-ca.pem"
  - prefix: "/c"
    upstream: "coaps://127.0.0.1:5784"
    psk: { identity: "gw", key_hex: "0102" }
admin: { max_connections: 5, request_timeout: 2s, max_request_bytes: 1024 }
)");
  Config c = load_config_file(path);
  EXPECT_EQ(c.source_path, path);
  EXPECT_EQ(c.threads, 4u);
  EXPECT_EQ(c.log.level, log::Level::debug);
  EXPECT_EQ(c.log.format, log::Format::json);
  ASSERT_EQ(c.listen.coap.size(), 2u);
  EXPECT_EQ(c.listen.coap[0].to_string(), "0.0.0.0:15683");
  EXPECT_TRUE(c.listen.coap[1].is_v6());
  EXPECT_EQ(c.listen.coap[1].to_string(), "[::1]:15683");
  ASSERT_EQ(c.listen.coaps.size(), 1u);
  EXPECT_EQ(c.listen.coaps[0].to_string(), "127.0.0.2:15684");
  ASSERT_TRUE(c.listen.admin);
  EXPECT_EQ(c.listen.admin->to_string(), "[::1]:19683");
  EXPECT_EQ(c.dtls.psk.hint, "");
  ASSERT_EQ(c.dtls.psk.keys.size(), 2u);
  EXPECT_EQ(c.dtls.psk.keys[0].identity, "a");
  EXPECT_EQ(c.dtls.psk.keys[0].key, "secret-a");
  EXPECT_EQ(c.dtls.psk.keys[1].identity, "b");
  EXPECT_EQ(c.dtls.psk.keys[1].key, std::string("\x00\xff\x10", 3));
  EXPECT_EQ(c.dtls.pki.cert, "cert.pem");
  EXPECT_EQ(c.dtls.pki.private_key, "key.pem");
  EXPECT_EQ(c.dtls.pki.ca, "ca.pem");
  EXPECT_EQ(c.dtls.ciphers, "PSK-AES128-CCM8");
  EXPECT_EQ(c.dtls.handshake_timeout, 15s);
  EXPECT_EQ(c.dtls.max_handshakes, 7u);
  EXPECT_EQ(c.dtls.connection_id.length, 8u);
  EXPECT_EQ(c.dtls.connection_id.node_id, 200);
  EXPECT_EQ(c.sessions.max, 12u);
  EXPECT_EQ(c.sessions.idle_timeout, 5min);
  EXPECT_EQ(c.sessions.persist.file, "sessions.bin");
  EXPECT_EQ(c.sessions.persist.max_age, 1h);
  EXPECT_EQ(c.shutdown.drain_timeout, 0s);
  EXPECT_EQ(c.coap.ack_timeout, 1500ms);
  EXPECT_DOUBLE_EQ(c.coap.ack_random_factor, 1.25);
  EXPECT_EQ(c.coap.max_retransmit, 0u);
  EXPECT_EQ(c.coap.max_message_size, 512u);
  EXPECT_EQ(c.coap.max_body_size, 4096u);
  EXPECT_EQ(c.coap.max_reassemblies, 3u);
  EXPECT_EQ(c.coap.max_reassemblies_per_session, 2u);
  EXPECT_EQ(c.coap.max_block_cache_bytes, 100000u);
  EXPECT_EQ(c.coap.max_block_answers_per_session, 5u);
  EXPECT_EQ(c.coap.separate_response_after, 250ms);
  ASSERT_EQ(c.routes.size(), 3u);
  EXPECT_EQ(c.routes[0].prefix, "/t");
  EXPECT_EQ(c.routes[0].upstream, "file:t.jsonl");
  EXPECT_EQ(c.routes[1].prefix, "/api");
  EXPECT_EQ(c.routes[1].upstream, "https://example.test/base");
  EXPECT_TRUE(c.routes[1].strip_prefix);
  EXPECT_EQ(c.routes[1].timeout, 1500ms);
  EXPECT_EQ(c.routes[1].max_in_flight, 2u);
  EXPECT_EQ(c.routes[1].ca_file, "up-ca.pem");
  ASSERT_TRUE(c.routes[2].psk);
  EXPECT_EQ(c.routes[2].psk->identity, "gw");
  EXPECT_EQ(c.routes[2].psk->key, std::string("\x01\x02", 2));
  EXPECT_EQ(c.admin.max_connections, 5u);
  EXPECT_EQ(c.admin.request_timeout, 2s);
  EXPECT_EQ(c.admin.max_request_bytes, 1024u);
  EXPECT_EQ(resolve_path(c, c.sessions.persist.file), dir.path() + "/sessions.bin");
}

TEST(ConfigParse, EmptyListsAndEmptyAdminDisableListeners) {
  Config c = parse_config("listen: { coap: [], coaps: [], admin: \"\" }\n");
  EXPECT_TRUE(c.listen.coap.empty());
  EXPECT_TRUE(c.listen.coaps.empty());
  EXPECT_FALSE(c.listen.admin.has_value());
}

TEST(ConfigParse, PortZeroMayRepeat) {
  // Tests bind port 0 on several listeners; the kernel picks distinct ports.
  Config c = parse_config("listen: { coap: [\"127.0.0.1:0\"], coaps: [\"127.0.0.1:0\"] }\n");
  EXPECT_EQ(c.listen.coap[0].port(), 0);
}

TEST(Duration, GoodValues) {
  EXPECT_EQ(parse_duration("300s"), Duration(300000));
  EXPECT_EQ(parse_duration("5m"), Duration(300000));
  EXPECT_EQ(parse_duration("250ms"), Duration(250));
  EXPECT_EQ(parse_duration("1h"), Duration(3600000));
  EXPECT_EQ(parse_duration("1.5s"), Duration(1500));
  EXPECT_EQ(parse_duration("0s"), Duration(0));
  EXPECT_EQ(parse_duration("0.25m"), Duration(15000));
}

TEST(Duration, BadValues) {
  for (const char* bad : {"", "300", "s", "5 s", " 5s", "5s ", "-5s", "+5s", "5sec", "5S", "1.s",
                          ".5s", "1..5s", "5d", "1e3s", "99999999999h", "ms"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(PskKeysFile, RelativeToConfigFile) {
  TempDir dir;
  dir.write("keys/devices.yaml",
            "- { identity: \"d1\", key: \"k1\" }\n- { identity: \"d2\", key_hex: \"6b32\" }\n");
  auto path = dir.write("gw.yaml",
                        "dtls:\n  psk:\n    keys: [{ identity: inline, key: x }]\n"
                        "    keys_file: keys/devices.yaml\n");
  Config c = load_config_file(path);
  EXPECT_EQ(c.dtls.psk.keys_file, "keys/devices.yaml");
  EXPECT_EQ(resolve_path(c, c.dtls.psk.keys_file), dir.path() + "/keys/devices.yaml");
  // The inline keys stay a list; the file's keys are one compact table beside them.
  ASSERT_EQ(c.dtls.psk.keys.size(), 1u);
  EXPECT_EQ(c.dtls.psk.keys[0].identity, "inline");
  ASSERT_EQ(c.dtls.psk.file_keys->size(), 2u);
  EXPECT_EQ(c.dtls.psk.file_keys->find("d1"), "k1");
  EXPECT_EQ(c.dtls.psk.file_keys->find("d2"), "k2");
  EXPECT_FALSE(c.dtls.psk.file_keys->find("inline").has_value());
}

TEST(PskKeysFile, ErrorsInsideAreReportedUnderKeysFile) {
  TempDir dir;
  dir.write("keys.yaml",
            "- { identity: \"d1\", key: \"k1\" }\n"
            "- { identity: \"d1\", key: \"k2\" }\n"
            "- { identity: \"d3\", key_hex: \"zz\" }\n"
            "- { identity: \"inline\", key: \"k4\" }\n");
  auto path = dir.write("gw.yaml",
                        "dtls: { psk: { keys: [{ identity: inline, key: x }], keys_file: keys.yaml } }\n");
  try {
    load_config_file(path);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues.size(), 3u) << e.what();
    for (const auto& issue : e.issues) EXPECT_EQ(issue.key_path, "dtls.psk.keys_file");
    EXPECT_NE(e.issues[0].message.find("[1].identity: duplicate identity \"d1\""), std::string::npos)
        << e.issues[0].message;
    EXPECT_NE(e.issues[1].message.find("[2].key_hex"), std::string::npos) << e.issues[1].message;
    EXPECT_NE(e.issues[2].message.find("\"inline\""), std::string::npos) << e.issues[2].message;
    EXPECT_NE(e.issues[0].message.find(dir.path() + "/keys.yaml"), std::string::npos);
  }
}

TEST(PskKeysFile, MissingFileIsAnIssue) {
  TempDir dir;
  auto path = dir.write("gw.yaml", "dtls: { psk: { keys_file: nope.yaml } }\n");
  try {
    load_config_file(path);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues.size(), 1u);
    EXPECT_EQ(e.issues[0].key_path, "dtls.psk.keys_file");
    EXPECT_NE(e.issues[0].message.find("nope.yaml"), std::string::npos);
  }
}

TEST(PskKeysFile, LoadDirectly) {
  TempDir dir;
  auto good = dir.write("good.yaml", "- { identity: x, key_hex: \"ABCDef\" }\n");
  auto keys = load_psk_keys_file(good);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].key, std::string("\xab\xcd\xef", 3));
  EXPECT_TRUE(load_psk_keys_file(dir.write("empty.yaml", "# no keys yet\n")).empty());
  auto not_list = dir.write("map.yaml", "identity: x\nkey: y\n");
  try {
    load_psk_keys_file(not_list);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues.size(), 1u);
    EXPECT_EQ(e.issues[0].key_path, "");
  }
  auto bad = dir.write("bad.yaml", "- { identity: x }\n- { key: y }\n- { identity: z, key: a, key_hex: \"00\", extra: 1 }\n");
  try {
    load_psk_keys_file(bad);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    std::string all = e.what();
    EXPECT_NE(all.find("[0]: needs key or key_hex"), std::string::npos) << all;
    EXPECT_NE(all.find("[1].identity: is required"), std::string::npos) << all;
    EXPECT_NE(all.find("[2]: give either key or key_hex, not both"), std::string::npos) << all;
    EXPECT_NE(all.find("[2].extra: unknown key \"extra\""), std::string::npos) << all;
  }
}

// The keys file holds secrets: one that others can read or change is refused, checked on the
// descriptor that was read (a symlink is followed: what counts is the file behind it).
TEST(PskKeysFile, OthersMayNotReadIt) {
  namespace fs = std::filesystem;
  TempDir dir;
  const std::string text = "- { identity: x, key: y }\n";
  EXPECT_EQ(load_psk_keys_file(dir.write("owner.yaml", text)).size(), 1u);
  auto group = fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read;  // root:coapgw 0640
  EXPECT_EQ(load_psk_keys_file(dir.write("group.yaml", text, group)).size(), 1u);
  for (auto extra : {fs::perms::others_read, fs::perms::others_write}) {
    auto path = dir.write("wide.yaml", text, group | extra);
    try {
      load_psk_keys_file(path);
      FAIL() << "expected ConfigError for a keys file others can access";
    } catch (const ConfigError& e) {
      std::string all = e.what();
      EXPECT_NE(all.find("wide.yaml"), std::string::npos) << all;
      EXPECT_NE(all.find(extra == fs::perms::others_read ? "mode 0644" : "mode 0642"), std::string::npos) << all;
    }
  }
  auto link = dir.path() + "/link.yaml";
  fs::create_symlink(dir.path() + "/wide.yaml", link);
  EXPECT_THROW(load_psk_keys_file(link), ConfigError);  // the target's mode counts, not the link's
  fs::permissions(dir.path() + "/wide.yaml", fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(load_psk_keys_file(link).size(), 1u);
  // Through dtls.psk.keys_file the refusal names the key.
  fs::permissions(dir.path() + "/group.yaml", group | fs::perms::others_read);
  auto gw = dir.write("gw.yaml", "dtls: { psk: { keys_file: group.yaml } }\n");
  try {
    load_config_file(gw);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues.size(), 1u);
    EXPECT_EQ(e.issues[0].key_path, "dtls.psk.keys_file");
    EXPECT_NE(e.issues[0].message.find("mode 0644"), std::string::npos) << e.issues[0].message;
  }
}

TEST(ResolvePath, AgainstConfigDirectory) {
  Config c;
  EXPECT_EQ(resolve_path(c, "x.yaml"), "x.yaml");  // no source: relative to cwd
  c.source_path = "/etc/coapgw/gateway.yaml";
  EXPECT_EQ(resolve_path(c, "x.yaml"), "/etc/coapgw/x.yaml");
  EXPECT_EQ(resolve_path(c, "sub/x.yaml"), "/etc/coapgw/sub/x.yaml");
  EXPECT_EQ(resolve_path(c, "/abs/x.yaml"), "/abs/x.yaml");
  EXPECT_EQ(resolve_path(c, ""), "");
  c.source_path = "gateway.yaml";
  EXPECT_EQ(resolve_path(c, "x.yaml"), "x.yaml");
}

TEST(LoadFile, UnreadableFile) {
  try {
    load_config_file("/nonexistent/coapgw.yaml");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues.size(), 1u);
    EXPECT_EQ(e.issues[0].key_path, "");
    EXPECT_NE(e.issues[0].message.find("/nonexistent/coapgw.yaml"), std::string::npos);
  }
}

TEST(LoadFile, YamlSyntaxErrorHasLineAndColumn) {
  try {
    parse_config("threads: 1\nlog: { level: info\n");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues.size(), 1u);
    EXPECT_EQ(e.issues[0].key_path, "");
    EXPECT_NE(e.issues[0].message.find("line "), std::string::npos) << e.issues[0].message;
    EXPECT_NE(e.issues[0].message.find("column "), std::string::npos) << e.issues[0].message;
  }
}

// A copy of config/ as installed (0640): a git checkout leaves the files world-readable.
std::string installed_samples(const TempDir& dir) {
  namespace fs = std::filesystem;
  for (const char* name : {"gateway.yaml", "psk-keys.yaml"}) {
    fs::copy_file(std::string(COAPGW_CONFIG_DIR) + "/" + name, dir.path() + "/" + name);
    fs::permissions(dir.path() + "/" + name, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  }
  return dir.path();
}

TEST(RepoSamples, GatewayYamlParses) {
  TempDir dir;
  Config c = load_config_file(installed_samples(dir) + "/gateway.yaml");
  ASSERT_EQ(c.listen.coap.size(), 1u);
  EXPECT_EQ(c.listen.coap[0].to_string(), "127.0.0.1:5683");
  ASSERT_EQ(c.listen.coaps.size(), 1u);
  EXPECT_EQ(c.listen.coaps[0].to_string(), "127.0.0.1:5684");
  ASSERT_TRUE(c.listen.admin);
  EXPECT_EQ(c.listen.admin->to_string(), "127.0.0.1:9683");
  EXPECT_EQ(c.dtls.psk.hint, "coapgw");
  EXPECT_EQ(c.dtls.psk.keys_file, "psk-keys.yaml");
  ASSERT_GE(c.dtls.psk.keys.size(), 1u);
  EXPECT_EQ(c.dtls.psk.keys[0].identity, "demo-device");
  EXPECT_EQ(c.dtls.psk.keys[0].key, "demo-secret");
  EXPECT_TRUE(c.dtls.psk.file_keys->find("sensor-0001").has_value());  // from psk-keys.yaml
  EXPECT_TRUE(c.dtls.psk.file_keys->find("sensor-0002").has_value());
  ASSERT_FALSE(c.routes.empty());
  EXPECT_EQ(c.routes[0].prefix, "/telemetry");
  EXPECT_EQ(c.routes[0].upstream, "file:/var/tmp/coapgw-telemetry.jsonl");
}

TEST(RepoSamples, PskKeysYamlLoads) {
  TempDir dir;
  auto keys = load_psk_keys_file(installed_samples(dir) + "/psk-keys.yaml");
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[1].key.size(), 16u);
}

}  // namespace
}  // namespace coapgw::config

namespace coapgw::config {
namespace {

// dtls.tickets (RFC 5077): defaults, the key file's secrets, its checks and mode rules.
TEST(TicketsConfig, DefaultsAndKeys) {
  Config d = parse_config("");
  EXPECT_TRUE(d.dtls.tickets.enabled);
  EXPECT_EQ(d.dtls.tickets.key_file, "");
  EXPECT_EQ(d.dtls.tickets.rotation, std::chrono::hours(12));
  EXPECT_TRUE(d.dtls.tickets.secrets.empty());
  Config c = parse_config("dtls: { tickets: { enabled: false, rotation: 1h } }\n");
  EXPECT_FALSE(c.dtls.tickets.enabled);
  EXPECT_EQ(c.dtls.tickets.rotation, std::chrono::hours(1));
  for (const char* bad : {"dtls: { tickets: { rotation: 10s } }\n", "dtls: { tickets: { rotation: 31d } }\n",
                          "dtls: { tickets: { extra: 1 } }\n", "dtls: { tickets: { enabled: maybe } }\n"}) {
    try {
      parse_config(bad);
      FAIL() << "expected ConfigError for " << bad;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.issues[0].key_path.rfind("dtls.tickets", 0), 0u) << e.what();
    }
  }
}

TEST(TicketsConfig, KeyFileSecretsOneALine) {
  namespace fs = std::filesystem;
  TempDir dir;
  const std::string a(64, 'a'), b(128, 'b');
  dir.write("tickets.key", "# newest first\n" + a + "\n\n  " + b + "  \n");
  auto gw = dir.write("gw.yaml", "dtls: { tickets: { key_file: tickets.key } }\n");
  Config c = load_config_file(gw);
  ASSERT_EQ(c.dtls.tickets.secrets.size(), 2u);
  EXPECT_EQ(c.dtls.tickets.secrets[0], std::string(32, '\xaa'));
  EXPECT_EQ(c.dtls.tickets.secrets[1], std::string(64, '\xbb'));

  auto issues_of = [&](const std::string& file_text, fs::perms mode) {
    dir.write("t2.key", file_text, mode);
    auto path = dir.write("gw2.yaml", "dtls: { tickets: { key_file: t2.key } }\n");
    try {
      load_config_file(path);
    } catch (const ConfigError& e) {
      for (const auto& issue : e.issues) EXPECT_EQ(issue.key_path, "dtls.tickets.key_file");
      return std::string(e.what());
    }
    return std::string();
  };
  const auto owner = fs::perms::owner_read | fs::perms::owner_write;
  EXPECT_NE(issues_of("abcd\n", owner).find("line 1: a secret must be 32..64 bytes"), std::string::npos);
  EXPECT_NE(issues_of(a + "\nxyz\n", owner).find("line 2: not valid hex"), std::string::npos);
  EXPECT_NE(issues_of("# nothing\n", owner).find("no secret"), std::string::npos);
  std::string nine;
  for (int i = 0; i < 9; ++i) nine += a + "\n";
  EXPECT_NE(issues_of(nine, owner).find("at most 8 secrets"), std::string::npos);
  // Secrets: others may not read it (the PSK keys file's rule; root:coapgw 0640 is fine).
  EXPECT_EQ(issues_of(a + "\n", owner | fs::perms::group_read), "");
  EXPECT_NE(issues_of(a + "\n", owner | fs::perms::others_read).find("mode 0604"), std::string::npos);
  EXPECT_NE(issues_of("", owner).find("no secret"), std::string::npos);
}

}  // namespace
}  // namespace coapgw::config
