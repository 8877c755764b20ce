// The one validation pass (issue 11, point 6): server::prepare() is what --check-config, start-up
// and SIGHUP run, so everything start-up would trip over is a config error with its key path here:
// routes that cannot be built, CA files that do not load, unreadable keys files, a certificate and
// key that do not match, a cipher list without a usable suite.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "config/config.hpp"
#include "server/snapshot.hpp"
#include "temp_dir.hpp"
#include "test_certs.hpp"

namespace coapgw::config {
namespace {

using test::TempDir;

std::vector<ConfigIssue> prepare_issues(const std::string& yaml, const std::string& source) {
  try {
    auto config = std::make_shared<Config>(parse_config(yaml, source));
    server::prepare(config);
  } catch (const ConfigError& e) {
    return e.issues;
  }
  return {};
}

std::string dump(const std::vector<ConfigIssue>& issues) {
  std::string out;
  for (const auto& i : issues) out += i.key_path + ": " + i.message + "\n";
  return out;
}

bool has(const std::vector<ConfigIssue>& issues, const std::string& path, const std::string& part) {
  return std::any_of(issues.begin(), issues.end(), [&](const ConfigIssue& i) {
    return i.key_path == path && i.message.find(part) != std::string::npos;
  });
}

class Prepare : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new dtls::test::TestPki();
    other_ = new dtls::test::TestPki();
  }
  static void TearDownTestSuite() {
    delete pki_;
    delete other_;
  }
  std::string config(const std::string& extra_routes = "", const std::string& dtls = "") {
    return "listen: { coap: [\"127.0.0.1:0\"], coaps: [\"127.0.0.1:0\"], admin: \"\" }\n"
           "dtls:\n  psk: { keys: [ { identity: a, key: b } ] }\n" + dtls +
           "routes:\n  - { prefix: /t, upstream: \"file:t.jsonl\" }\n" + extra_routes;
  }
  void expect_issue(const std::string& yaml, const std::string& path, const std::string& part) {
    auto issues = prepare_issues(yaml, dir_.write("gw.yaml", yaml));
    EXPECT_TRUE(has(issues, path, part)) << "want " << path << " ~ " << part << "\n" << dump(issues);
  }
  TempDir dir_;
  static dtls::test::TestPki* pki_;
  static dtls::test::TestPki* other_;
};
dtls::test::TestPki* Prepare::pki_ = nullptr;
dtls::test::TestPki* Prepare::other_ = nullptr;

TEST_F(Prepare, GoodConfigPassesAndDoesNotCreateTheSinkFile) {
  auto yaml = config("", "  pki: { cert: \"" + pki_->cert("server") + "\", private_key: \"" + pki_->key("server") +
                             "\", ca: \"" + pki_->cert("ca") + "\" }\n");
  auto path = dir_.write("gw.yaml", yaml);
  auto snap = server::prepare(std::make_shared<Config>(parse_config(yaml, path)));
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->psk->size(), 1u);
  EXPECT_TRUE(snap->dtls.trust);
  ASSERT_EQ(snap->routes.size(), 1u);
  EXPECT_EQ(snap->routes[0].upstream, "file:" + dir_.path() + "/t.jsonl");
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/t.jsonl")) << "--check-config must not create files";
}

TEST_F(Prepare, FileSinkThatCannotBeOpened) {
  expect_issue(config("  - { prefix: /x, upstream: \"file:no/such/dir/x.jsonl\" }\n"), "routes[1].upstream",
               "does not exist");
  std::filesystem::create_directories(dir_.path() + "/a-directory");
  expect_issue(config("  - { prefix: /x, upstream: \"file:a-directory\" }\n"), "routes[1].upstream", "cannot open");
}

TEST_F(Prepare, HttpsCaFileThatDoesNotLoad) {
  dir_.write("garbage.pem", "not a certificate\n");
  expect_issue(config("  - { prefix: /x, upstream: \"https://127.0.0.1:9\", ca_file: garbage.pem }\n"), "routes[1]",
               "CA");
}

TEST_F(Prepare, CoapsUpstreamWhosePskContextCannotBeBuilt) {
  // The config accepts the identity; the coaps client context refuses a NUL byte in it.
  expect_issue(config("  - { prefix: /x, upstream: \"coaps://127.0.0.1:5684\", psk: { identity: \"a\\0b\", key: k } }\n"),
               "routes[1]", "NUL");
}

TEST_F(Prepare, CertificateAndKeyThatDoNotMatch) {
  expect_issue(config("", "  pki: { cert: \"" + pki_->cert("server") + "\", private_key: \"" + other_->key("server") +
                              "\" }\n"),
               "dtls.pki.private_key", "mismatch");
}

TEST_F(Prepare, ClientCaThatDoesNotLoad) {
  auto garbage = dir_.write("garbage-ca.pem", "not a certificate\n");
  expect_issue(config("", "  pki: { cert: \"" + pki_->cert("server") + "\", private_key: \"" + pki_->key("server") +
                              "\", ca: \"" + garbage + "\" }\n"),
               "dtls.pki.ca", "CA");
}

TEST_F(Prepare, CipherListWithoutUsableSuite) {
  expect_issue(config("", "  ciphers: \"NO-SUCH-CIPHER\"\n"), "dtls.ciphers", "cipher");
  expect_issue(config("", "  ciphers: \"PSK-AES128-CBC-SHA256\"\n"), "dtls.ciphers", "AEAD");
}

TEST_F(Prepare, UnreadableKeysFile) {
  std::filesystem::create_directories(dir_.path() + "/keys-dir");
  expect_issue("dtls: { psk: { keys_file: keys-dir } }\n", "dtls.psk.keys_file", "");
}

TEST_F(Prepare, EveryProblemIsReportedInOnePass) {
  auto yaml = config("  - { prefix: /x, upstream: \"file:no/such/dir/x.jsonl\" }\n", "  ciphers: \"NO-SUCH-CIPHER\"\n");
  auto issues = prepare_issues(yaml, dir_.write("gw.yaml", yaml));
  EXPECT_TRUE(has(issues, "routes[1].upstream", "")) << dump(issues);
  EXPECT_TRUE(has(issues, "dtls.ciphers", "")) << dump(issues);
}

}  // namespace
}  // namespace coapgw::config
