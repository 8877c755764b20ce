// Validation: each rule reports its key path, and one pass reports them all.
#include <gtest/gtest.h>

#include <algorithm>

#include "config/config.hpp"
#include "temp_dir.hpp"

namespace coapgw::config {
namespace {

using test::TempDir;

std::vector<ConfigIssue> issues_of(const std::string& yaml, const std::string& source = "") {
  try {
    parse_config(yaml, source);
  } catch (const ConfigError& e) {
    return e.issues;
  }
  return {};
}

// True when some issue has exactly this key path and its message contains `part`.
bool has_issue(const std::vector<ConfigIssue>& issues, const std::string& path,
               const std::string& part = "") {
  return std::any_of(issues.begin(), issues.end(), [&](const ConfigIssue& i) {
    return i.key_path == path && i.message.find(part) != std::string::npos;
  });
}

std::string dump(const std::vector<ConfigIssue>& issues) {
  std::string out;
  for (const auto& i : issues) out += i.key_path + ": " + i.message + "\n";
  return out;
}

#define EXPECT_ISSUE(yaml, path, part)                       \
  do {                                                       \
    auto issues_ = issues_of(yaml);                          \
    EXPECT_TRUE(has_issue(issues_, path, part)) << dump(issues_); \
  } while (0)

TEST(Validation, UnknownKeyTopLevelAndNested) {
  auto issues = issues_of(
      "foo: 1\nlog: { level: info, colour: red }\ndtls: { psk: { hints: x } }\n"
      "routes: [{ prefix: /a, upstream: \"file:x\", retries: 3 }]\n"
      "sessions: { persist: { path: x } }\n");
  EXPECT_TRUE(has_issue(issues, "foo", "unknown key \"foo\"")) << dump(issues);
  EXPECT_TRUE(has_issue(issues, "log.colour", "unknown key \"colour\"")) << dump(issues);
  EXPECT_TRUE(has_issue(issues, "dtls.psk.hints", "unknown key \"hints\"")) << dump(issues);
  EXPECT_TRUE(has_issue(issues, "routes[0].retries", "unknown key \"retries\"")) << dump(issues);
  EXPECT_TRUE(has_issue(issues, "sessions.persist.path", "unknown key")) << dump(issues);
  EXPECT_EQ(issues.size(), 5u) << dump(issues);
}

TEST(Validation, SeveralIssuesAtOnceInOnePass) {
  auto issues = issues_of(R"(
threads: 2000
log: { level: loud, format: xml }
sessions: { max: 0, idle_timeout: 300 }
coap: { ack_random_factor: 0.5, max_retransmit: 21, max_message_size: 63 }
routes:
  - { prefix: "api", upstream: "http://127.0.0.1:8000" }
  - { prefix: "/x", upstream: "ftp://h", timeout: 0s }
)");
  EXPECT_TRUE(has_issue(issues, "threads", "between 0 and 1024")) << dump(issues);
  EXPECT_TRUE(has_issue(issues, "log.level", "loud"));
  EXPECT_TRUE(has_issue(issues, "log.format", "xml"));
  EXPECT_TRUE(has_issue(issues, "sessions.max", "between 1"));
  EXPECT_TRUE(has_issue(issues, "sessions.idle_timeout", "unit"));
  EXPECT_TRUE(has_issue(issues, "coap.ack_random_factor", "1.0"));
  EXPECT_TRUE(has_issue(issues, "coap.max_retransmit", "between 0 and 20"));
  EXPECT_TRUE(has_issue(issues, "coap.max_message_size", "between 64 and 65507"));
  EXPECT_TRUE(has_issue(issues, "routes[0].prefix", "must start with \"/\""));
  EXPECT_TRUE(has_issue(issues, "routes[1].upstream", "unsupported upstream"));
  EXPECT_TRUE(has_issue(issues, "routes[1].timeout", "greater than 0"));
  EXPECT_EQ(issues.size(), 11u) << dump(issues);
}

TEST(Validation, WhatListsEveryIssueOnItsOwnLine) {
  try {
    parse_config("threads: -1\nfoo: 1\n");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("foo: unknown key \"foo\""), std::string::npos) << what;
    EXPECT_NE(what.find("\nthreads: must be between 0 and 1024"), std::string::npos) << what;
  }
}

TEST(Validation, WrongTypes) {
  EXPECT_ISSUE("threads: two\n", "threads", "expected an integer");
  EXPECT_ISSUE("threads: 1.5\n", "threads", "expected an integer");
  EXPECT_ISSUE("threads: [1]\n", "threads", "expected an integer");
  EXPECT_ISSUE("log: info\n", "log", "expected a map");
  EXPECT_ISSUE("log: { level: [info] }\n", "log.level", "expected a string");
  EXPECT_ISSUE("listen: { coap: \"127.0.0.1:5683\" }\n", "listen.coap", "expected a list");
  EXPECT_ISSUE("coap: { ack_random_factor: fast }\n", "coap.ack_random_factor", "expected a number");
  EXPECT_ISSUE("routes: { prefix: /a }\n", "routes", "expected a list");
  EXPECT_ISSUE("routes: [ \"/a\" ]\n", "routes[0]", "expected a map");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"file:x\", strip_prefix: maybe }]\n",
               "routes[0].strip_prefix", "true or false");
  EXPECT_ISSUE("dtls: { psk: { keys: [ \"demo\" ] } }\n", "dtls.psk.keys[0]", "expected a map");
  EXPECT_ISSUE("[1, 2]\n", "", "top level");
}

TEST(Validation, DurationsNeedUnitsAndMostMustBePositive) {
  EXPECT_ISSUE("dtls: { handshake_timeout: 30 }\n", "dtls.handshake_timeout", "unit");
  EXPECT_ISSUE("dtls: { handshake_timeout: 0ms }\n", "dtls.handshake_timeout", "greater than 0");
  EXPECT_ISSUE("sessions: { persist: { max_age: 0h } }\n", "sessions.persist.max_age", "greater than 0");
  EXPECT_ISSUE("coap: { ack_timeout: 2 }\n", "coap.ack_timeout", "unit");
  EXPECT_ISSUE("coap: { separate_response_after: 0s }\n", "coap.separate_response_after", "greater than 0");
  EXPECT_ISSUE("admin: { request_timeout: 10 }\n", "admin.request_timeout", "unit");
  EXPECT_ISSUE("shutdown: { drain_timeout: soon }\n", "shutdown.drain_timeout", "unit");
  EXPECT_TRUE(issues_of("shutdown: { drain_timeout: 0s }\n").empty());
}

TEST(Validation, Bounds) {
  EXPECT_ISSUE("dtls: { max_handshakes: 0 }\n", "dtls.max_handshakes", "between 1");
  EXPECT_ISSUE("dtls: { connection_id: { length: 2 } }\n", "dtls.connection_id.length", "0 (never negotiate) or 5..32");
  EXPECT_ISSUE("dtls: { connection_id: { length: 4 } }\n", "dtls.connection_id.length", "0 (never negotiate) or 5..32");
  EXPECT_ISSUE("dtls: { connection_id: { length: 33 } }\n", "dtls.connection_id.length", "between 0");
  EXPECT_ISSUE("dtls: { connection_id: { node_id: 256 } }\n", "dtls.connection_id.node_id", "between 0");
  EXPECT_ISSUE("dtls: { connection_id: { size: 4 } }\n", "dtls.connection_id.size", "unknown");
  EXPECT_TRUE(issues_of("dtls: { connection_id: { length: 0 } }\n").empty());
  EXPECT_ISSUE("coap: { ack_random_factor: 0.99 }\n", "coap.ack_random_factor", "1.0");
  EXPECT_ISSUE("coap: { max_message_size: 65508 }\n", "coap.max_message_size", "65507");
  EXPECT_ISSUE("coap: { max_body_size: 0 }\n", "coap.max_body_size", "between 1");
  EXPECT_ISSUE("coap: { max_reassemblies: 0 }\n", "coap.max_reassemblies", "between 1");
  EXPECT_ISSUE("coap: { max_reassemblies_per_session: 0 }\n", "coap.max_reassemblies_per_session", "between 1");
  EXPECT_ISSUE("coap: { max_block_answers_per_session: 0 }\n", "coap.max_block_answers_per_session", "between 1");
  EXPECT_ISSUE("admin: { max_connections: 0 }\n", "admin.max_connections", "between 1");
  EXPECT_ISSUE("admin: { max_request_bytes: 10 }\n", "admin.max_request_bytes", "between 256");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"file:x\", max_in_flight: 0 }]\n",
               "routes[0].max_in_flight", "between 1");
  EXPECT_TRUE(issues_of("threads: 1024\ncoap: { max_retransmit: 20, max_message_size: 64 }\n").empty());
}

TEST(Validation, ListenAddresses) {
  EXPECT_ISSUE("listen: { coap: [\"localhost:5683\"] }\n", "listen.coap[0]", "not an address");
  EXPECT_ISSUE("listen: { coaps: [\"127.0.0.1:5684\", \"::1:5684\"] }\n", "listen.coaps[1]", "not an address");
  EXPECT_ISSUE("listen: { coap: [\"127.0.0.1:70000\"] }\n", "listen.coap[0]", "not an address");
  EXPECT_ISSUE("listen: { admin: \"9683\" }\n", "listen.admin", "not an address");
  EXPECT_ISSUE("listen: { coap: [\"127.0.0.1:5683\", \"127.0.0.1:5683\"] }\n", "listen.coap[1]",
               "duplicate listen address 127.0.0.1:5683 (also listen.coap[0])");
  EXPECT_ISSUE("listen: { coaps: [\"127.0.0.1:5683\"] }\n", "listen.coaps[0]", "duplicate listen address");
  EXPECT_ISSUE("listen: { coap_tcp: [\"[::1]:9000\"], admin: \"[::1]:9000\" }\n", "listen.coap_tcp[0]",
               "duplicate listen address");
  // UDP and TCP ports are separate namespaces: the same number on both is two sockets, not a clash.
  EXPECT_TRUE(issues_of("listen: { coap: [\"[::1]:9000\"], admin: \"[::1]:9000\", api: \"[::1]:9001\",\n"
                        "          coap_tcp: [\"[::1]:9001\"] }\n").size() == 1);
  EXPECT_TRUE(issues_of("listen: { coap: [\"127.0.0.1:5683\"], coap_tcp: [\"127.0.0.1:5683\"],\n"
                        "          coaps: [\"127.0.0.1:5684\"], coaps_tcp: [\"127.0.0.1:5684\"] }\n").empty());
}

TEST(Validation, PskEntries) {
  EXPECT_ISSUE("dtls: { psk: { keys: [{ key: x }] } }\n", "dtls.psk.keys[0].identity", "required");
  EXPECT_ISSUE("dtls: { psk: { keys: [{ identity: \"\", key: x }] } }\n", "dtls.psk.keys[0].identity",
               "must not be empty");
  EXPECT_ISSUE("dtls: { psk: { keys: [{ identity: a }] } }\n", "dtls.psk.keys[0]", "needs key or key_hex");
  EXPECT_ISSUE("dtls: { psk: { keys: [{ identity: a, key: x, key_hex: \"00\" }] } }\n",
               "dtls.psk.keys[0]", "not both");
  EXPECT_ISSUE("dtls: { psk: { keys: [{ identity: a, key_hex: \"abc\" }] } }\n",
               "dtls.psk.keys[0].key_hex", "not valid hex");
  EXPECT_ISSUE("dtls: { psk: { keys: [{ identity: a, key_hex: \"0g\" }] } }\n",
               "dtls.psk.keys[0].key_hex", "not valid hex");
  EXPECT_ISSUE("dtls: { psk: { keys: [{ identity: a, key: \"\" }] } }\n", "dtls.psk.keys[0].key",
               "must not be empty");
  EXPECT_ISSUE("dtls: { psk: { keys: [{ identity: a, key: x }, { identity: b, key: y }, { identity: a, key: z }] } }\n",
               "dtls.psk.keys[2].identity", "duplicate identity \"a\" (first at dtls.psk.keys[0])");
  EXPECT_ISSUE("dtls: { psk: { keys: [{ identity: " + std::string(129, 'i') + ", key: x }] } }\n",
               "dtls.psk.keys[0].identity", "longer than 128");
}

TEST(Validation, Routes) {
  EXPECT_ISSUE("routes: [{ upstream: \"file:x\" }]\n", "routes[0].prefix", "required");
  EXPECT_ISSUE("routes: [{ prefix: /a }]\n", "routes[0].upstream", "required");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"file:\" }]\n", "routes[0].upstream", "needs a path");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"127.0.0.1:8000\" }]\n", "routes[0].upstream", "unsupported");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"http://\" }]\n", "routes[0].upstream", "no host");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"coap://:5683/x\" }]\n", "routes[0].upstream", "no host");
  // Checked with the gateway's own URL parser, so a URL it would refuse at start is a config issue.
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"http://h:0\" }]\n", "routes[0].upstream", "malformed");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"coap://u@h/x\" }]\n", "routes[0].upstream", "malformed");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"https://h/x?y\" }]\n", "routes[0].upstream", "malformed");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"file:x\" }, { prefix: /a, upstream: \"file:y\" }]\n",
               "routes[1].prefix", "duplicate prefix");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"http://h\", ca_file: /etc/hostname }]\n",
               "routes[0].ca_file", "only applies to https");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"https://h\", ca_file: /nonexistent/ca.pem }]\n",
               "routes[0].ca_file", "file not found");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"coap://h\", psk: { identity: i, key: k } }]\n",
               "routes[0].psk", "only applies to coaps");
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"coaps://127.0.0.1:5684\" }]\n", "routes[0].psk",
               "required for coaps");
  EXPECT_TRUE(issues_of("routes: [{ prefix: /a, upstream: \"coaps://127.0.0.1:5684\", psk: { identity: i, key: k } }]\n")
                  .empty());
  EXPECT_ISSUE("routes: [{ prefix: /a, upstream: \"coaps://h\", psk: { identity: i, key_hex: \"x\" } }]\n",
               "routes[0].psk.key_hex", "not valid hex");
  for (const char* ok : {"http://127.0.0.1:8000", "https://h/p", "coap://[::1]:5783",
                         "file:/var/tmp/x.jsonl"}) {
    EXPECT_TRUE(issues_of(std::string("routes: [{ prefix: /a, upstream: \"") + ok + "\" }]\n").empty())
        << ok;
  }
}

TEST(Validation, PkiFiles) {
  TempDir dir;
  dir.write("cert.pem", "x");
  dir.write("key.pem", "x");
  auto source = dir.path() + "/gw.yaml";
  EXPECT_TRUE(issues_of("dtls: { pki: { cert: cert.pem, private_key: key.pem } }\n", source).empty());
  auto only_cert = issues_of("dtls: { pki: { cert: cert.pem } }\n", source);
  EXPECT_TRUE(has_issue(only_cert, "dtls.pki.private_key", "set together")) << dump(only_cert);
  auto only_key = issues_of("dtls: { pki: { private_key: key.pem } }\n", source);
  EXPECT_TRUE(has_issue(only_key, "dtls.pki.cert", "set together")) << dump(only_key);
  auto missing = issues_of("dtls: { pki: { cert: cert.pem, private_key: nokey.pem, ca: noca.pem } }\n", source);
  EXPECT_TRUE(has_issue(missing, "dtls.pki.private_key", "file not found: \"" + dir.path() + "/nokey.pem\""))
      << dump(missing);
  EXPECT_TRUE(has_issue(missing, "dtls.pki.ca", "file not found")) << dump(missing);
  auto ca_alone = issues_of("dtls: { pki: { ca: cert.pem } }\n", source);
  EXPECT_TRUE(has_issue(ca_alone, "dtls.pki.ca", "needs dtls.pki.cert")) << dump(ca_alone);
}

TEST(Validation, DuplicateYamlKey) {
  EXPECT_ISSUE("threads: 1\nthreads: 2\n", "threads", "duplicate key");
}

}  // namespace
}  // namespace coapgw::config
