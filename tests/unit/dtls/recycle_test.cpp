// The SSL object of a completed handshake is cleared and reused for the next one (issue 17,
// item 5: ServerContext::recycle): the next device gets a working session of its own, nothing of
// the previous one, and no object made before a reload serves a handshake after it.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "dtls/dtls.hpp"
#include "test_peer.hpp"

namespace coapgw::dtls {
namespace {

using test::Bytes;
using test::Client;
using test::ClientOptions;

const auto t0 = std::chrono::steady_clock::now();

std::shared_ptr<const PskStore> store() {
  auto s = std::make_shared<PskStore>();
  s->add("demo-device", "demo-secret");
  s->add("other-device", "other-secret");
  return s;
}

std::unique_ptr<ServerContext> make_context() {
  ServerSettings settings;
  settings.psk = store();
  std::string error;
  auto context = ServerContext::create(settings, &error);
  EXPECT_TRUE(context) << error;
  return context;
}

ClientOptions options(const std::string& identity, const std::string& key) {
  ClientOptions o;
  o.identity = identity;
  o.key = key;
  return o;
}

// One record from the client: the server opens it and moves to the lean layer, which hands the
// SSL object back to the context.
std::vector<std::string> prove(Client& client, Engine& engine, std::string_view text) {
  EXPECT_TRUE(client.write(text));
  Output out;
  engine.on_datagram(client.take(), out, t0);
  std::vector<std::string> got;
  for (const auto& p : out.plaintexts) got.push_back(test::to_string(p));
  return got;
}

int marker_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}
int marker = 0;

TEST(DtlsRecycle, NextHandshakeReusesTheClearedObject) {
  auto server = make_context();
  Client first(options("demo-device", "demo-secret"));
  auto a = test::handshake(*server, first, *Address::parse("192.0.2.1:1000"), t0);
  ASSERT_TRUE(a.engine && a.engine->state() == Engine::State::established);
  SSL_set_ex_data(a.engine->native_handle(), marker_index(), &marker);
  EXPECT_EQ(prove(first, *a.engine, "one"), std::vector<std::string>{"one"});
  ASSERT_TRUE(a.engine->lean());

  // Another device, another key: the recycled object serves it with nothing of the first session.
  Client second(options("other-device", "other-secret"));
  auto b = test::handshake(*server, second, *Address::parse("192.0.2.2:2000"), t0);
  ASSERT_TRUE(b.engine && b.engine->state() == Engine::State::established);
  EXPECT_EQ(SSL_get_ex_data(b.engine->native_handle(), marker_index()), &marker);
  EXPECT_EQ(b.engine->identity(), "other-device");
  EXPECT_EQ(test::to_string(Bytes(b.engine->psk_key().begin(), b.engine->psk_key().end())), "other-secret");
  EXPECT_FALSE(b.engine->resumed());
  EXPECT_EQ(prove(second, *b.engine, "two"), std::vector<std::string>{"two"});
  ASSERT_TRUE(b.engine->lean());
  Output out;
  ASSERT_TRUE(b.engine->send(test::to_bytes("2.05"), out));
  second.receive(out.datagrams);
  ASSERT_EQ(second.received().size(), 1u);
  EXPECT_EQ(second.received()[0], "2.05");

  // Both sessions keep working side by side on their own keys.
  EXPECT_EQ(prove(first, *a.engine, "again"), std::vector<std::string>{"again"});

  // A wrong key on the recycled object fails as it would on a fresh one...
  Client wrong(options("demo-device", "not-the-secret"));
  auto c = test::handshake(*server, wrong, *Address::parse("192.0.2.3:3000"), t0);
  ASSERT_TRUE(c.engine);
  EXPECT_EQ(c.engine->state(), Engine::State::closed);
  EXPECT_EQ(c.engine->failure(), Failure::handshake_failed);
  c.engine.reset();  // a failed handshake's object is freed, not recycled
  // ...and the next device is served by a fresh one.
  Client third(options("demo-device", "demo-secret"));
  auto d = test::handshake(*server, third, *Address::parse("192.0.2.4:4000"), t0);
  ASSERT_TRUE(d.engine && d.engine->state() == Engine::State::established);
  EXPECT_EQ(SSL_get_ex_data(d.engine->native_handle(), marker_index()), nullptr);
  EXPECT_EQ(prove(third, *d.engine, "three"), std::vector<std::string>{"three"});
}

TEST(DtlsRecycle, NoObjectFromBeforeAReload) {
  auto server = make_context();
  Client first(options("demo-device", "demo-secret"));
  auto a = test::handshake(*server, first, *Address::parse("192.0.2.1:1000"), t0);
  ASSERT_TRUE(a.engine && a.engine->state() == Engine::State::established);
  SSL_set_ex_data(a.engine->native_handle(), marker_index(), &marker);
  // A reload lands between the handshake and the switch to the lean layer.
  auto reloaded = std::make_shared<PskStore>();
  reloaded->add("demo-device", "demo-secret");
  server->set_psk_store(reloaded);
  EXPECT_EQ(prove(first, *a.engine, "one"), std::vector<std::string>{"one"});
  ASSERT_TRUE(a.engine->lean());

  Client second(options("demo-device", "demo-secret"));
  auto b = test::handshake(*server, second, *Address::parse("192.0.2.2:2000"), t0);
  ASSERT_TRUE(b.engine && b.engine->state() == Engine::State::established);
  EXPECT_EQ(SSL_get_ex_data(b.engine->native_handle(), marker_index()), nullptr);
  // The store of the reload decides: other-device is gone.
  Client gone(options("other-device", "other-secret"));
  auto c = test::handshake(*server, gone, *Address::parse("192.0.2.3:3000"), t0);
  ASSERT_TRUE(c.engine);
  EXPECT_EQ(c.engine->failure(), Failure::bad_psk_identity);
}

}  // namespace
}  // namespace coapgw::dtls
