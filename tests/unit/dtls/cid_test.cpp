// RFC 9146 Connection IDs in the DTLS engine: tls12_cid records against records built by hand
// from the RFC's layout (with OpenSSL's AEAD directly, not our record code), the lean layer's
// CID checks and replay window, and the connection_id negotiation between the engine's client and
// server roles in memory (the epoch-1 records translated for OpenSSL), plus persistence of CIDs.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstring>
#include <string>
#include <vector>

#include "dtls/client_context.hpp"
#include "dtls/record_crypto.hpp"
#include "dtls/record_layer.hpp"
#include "dtls/server_context.hpp"

namespace coapgw::dtls {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::byte>;

const auto t0 = std::chrono::steady_clock::time_point{} + 1000s;

Bytes bytes(std::string_view s) {
  Bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}
std::string text(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }
void put(Bytes& b, std::uint64_t value, int count) {
  for (int i = count - 1; i >= 0; --i) b.push_back(static_cast<std::byte>((value >> (8 * i)) & 0xff));
}

// PSK-AES128-GCM-SHA256 (0x00A8): 16-byte key, 4-byte salt, 8-byte explicit nonce, 16-byte tag.
constexpr std::uint16_t gcm_suite = 0x00A8;

detail::TrafficKeys test_keys(int seed) {
  detail::TrafficKeys k;
  for (std::size_t i = 0; i < k.key.size(); ++i) k.key[i] = static_cast<std::byte>(i * 5 + seed);
  for (std::size_t i = 0; i < k.iv.size(); ++i) k.iv[i] = static_cast<std::byte>(i + 2 * seed);
  return k;
}

// A tls12_cid record laid out by hand from RFC 9146 sections 4 and 5 and sealed with OpenSSL's
// AES-128-GCM directly: header (25, fefd, epoch, sequence, cid, length), explicit nonce, then
// DTLSInnerPlaintext (content, real type, `padding` zeros) encrypted with the section 5 AAD.
Bytes hand_cid_record(const detail::TrafficKeys& keys, std::uint16_t epoch, std::uint64_t sequence, const Bytes& cid,
                      std::uint8_t real_type, std::string_view content, std::size_t padding) {
  Bytes inner = bytes(content);
  inner.push_back(static_cast<std::byte>(real_type));
  inner.insert(inner.end(), padding, std::byte{0});
  Bytes explicit_nonce;
  put(explicit_nonce, epoch, 2);
  put(explicit_nonce, sequence, 6);
  Bytes nonce(keys.iv.begin(), keys.iv.begin() + 4);
  nonce.insert(nonce.end(), explicit_nonce.begin(), explicit_nonce.end());
  Bytes aad;
  put(aad, 0xffffffffffffffffULL, 8);  // seq_num_placeholder
  put(aad, 25, 1);                      // tls12_cid
  put(aad, cid.size(), 1);              // cid_length
  put(aad, 25, 1);                      // tls12_cid
  put(aad, 0xfefd, 2);                  // DTLSCiphertext.version
  put(aad, epoch, 2);
  put(aad, sequence, 6);
  aad.insert(aad.end(), cid.begin(), cid.end());
  put(aad, inner.size(), 2);  // length_of_DTLSInnerPlaintext
  Bytes sealed(inner.size() + 16);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int n = 0;
  auto u = [](Bytes& b) { return reinterpret_cast<unsigned char*>(b.data()); };
  EXPECT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, reinterpret_cast<const unsigned char*>(keys.key.data()),
                               u(nonce)),
            1);
  EXPECT_EQ(EVP_EncryptUpdate(ctx, nullptr, &n, u(aad), static_cast<int>(aad.size())), 1);
  EXPECT_EQ(EVP_EncryptUpdate(ctx, u(sealed), &n, u(inner), static_cast<int>(inner.size())), 1);
  EXPECT_EQ(EVP_EncryptFinal_ex(ctx, u(sealed) + n, &n), 1);
  EXPECT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, u(sealed) + inner.size()), 1);
  EVP_CIPHER_CTX_free(ctx);
  Bytes record;
  put(record, 25, 1);
  put(record, 0xfefd, 2);
  put(record, epoch, 2);
  put(record, sequence, 6);
  record.insert(record.end(), cid.begin(), cid.end());
  put(record, explicit_nonce.size() + sealed.size(), 2);
  record.insert(record.end(), explicit_nonce.begin(), explicit_nonce.end());
  record.insert(record.end(), sealed.begin(), sealed.end());
  return record;
}

const Bytes our_cid = {std::byte{0x42}, std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}, std::byte{5}};

TEST(CidRecord, WireParsesTheCidFromTheHeaderWithTheIssuedLength) {
  const auto record = hand_cid_record(test_keys(1), 1, 7, our_cid, 23, "hello", 0);
  const auto parsed = wire::next_record(record, nullptr, our_cid.size());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->type, 25);
  EXPECT_EQ(parsed->epoch, 1);
  EXPECT_EQ(parsed->sequence, 7u);
  EXPECT_EQ(Bytes(parsed->cid.begin(), parsed->cid.end()), our_cid);
  EXPECT_EQ(parsed->fragment.size(), 8u + 6u + 16u);  // explicit nonce, "hello" + type, tag
  EXPECT_EQ(parsed->whole.size(), record.size());
  // One byte short of the header with its CID: not a record.
  EXPECT_FALSE(wire::next_record(std::span(record).first(13 + our_cid.size() - 1), nullptr, our_cid.size()));
}

TEST(CidRecord, OpensAHandBuiltRecordAndFindsTheRealTypeBehindThePadding) {
  auto crypto = detail::RecordCrypto::create();
  const auto* suite = detail::find_suite(gcm_suite);
  ASSERT_TRUE(crypto && suite);
  const auto keys = test_keys(1);
  for (std::size_t padding : {0u, 1u, 13u}) {
    const auto record = hand_cid_record(keys, 1, 9, our_cid, 21, "ab", padding);
    const auto opened = crypto->open_record(*suite, keys, *wire::next_record(record, nullptr, 6), crypto->scratch());
    ASSERT_TRUE(opened) << padding;
    EXPECT_EQ(opened->type, 21);
    EXPECT_EQ(text(crypto->scratch().first(opened->length)), "ab");
  }
}

TEST(CidRecord, SealingGivesExactlyTheRfcLayout) {
  auto crypto = detail::RecordCrypto::create();
  const auto* suite = detail::find_suite(gcm_suite);
  const auto keys = test_keys(2);
  Bytes sealed;
  ASSERT_TRUE(crypto->seal_record(*suite, keys, 23, 1, 0x010203, bytes("GET /x"), &sealed, our_cid));
  EXPECT_EQ(sealed, hand_cid_record(keys, 1, 0x010203, our_cid, 23, "GET /x", 0));
}

TEST(CidRecord, ATamperedCidHeaderOrAnAllZeroInnerPlaintextFails) {
  auto crypto = detail::RecordCrypto::create();
  const auto* suite = detail::find_suite(gcm_suite);
  const auto keys = test_keys(3);
  const auto record = hand_cid_record(keys, 1, 4, our_cid, 23, "x", 0);
  for (std::size_t at : {std::size_t{1}, std::size_t{4}, std::size_t{10}, std::size_t{11}, std::size_t{16}}) {
    Bytes bad = record;
    bad[at] ^= std::byte{0x01};
    const auto parsed = wire::next_record(bad, nullptr, 6);
    ASSERT_TRUE(parsed);
    EXPECT_FALSE(crypto->open_record(*suite, keys, *parsed, crypto->scratch())) << at;
  }
  // Content "", real type 0 and padding: no real type anywhere.
  const auto zeros = hand_cid_record(keys, 1, 5, our_cid, 0, "", 3);
  EXPECT_FALSE(crypto->open_record(*suite, keys, *wire::next_record(zeros, nullptr, 6), crypto->scratch()));
}

struct LeanCid {
  std::unique_ptr<detail::RecordCrypto> crypto = detail::RecordCrypto::create();
  detail::TrafficKeys peer_keys = test_keys(4);
  std::unique_ptr<detail::RecordLayer> layer;

  explicit LeanCid(Bytes write_cid = {}) {
    detail::LeanStart start;
    start.suite = detail::find_suite(gcm_suite);
    start.read = peer_keys;
    start.write = test_keys(5);
    start.read_cid = our_cid;
    start.write_cid = std::move(write_cid);
    layer = detail::make_lean_record_layer(*crypto, start);
  }
  detail::RecordLayer::Opened open(const Bytes& record, Output& out) {
    return layer->open(*wire::next_record(record, nullptr, our_cid.size()), out);
  }
};

TEST(CidLean, OpensCidRecordsAndKeepsTheReplayWindow) {
  using Opened = detail::RecordLayer::Opened;
  LeanCid s;
  Output out;
  EXPECT_EQ(s.open(hand_cid_record(s.peer_keys, 1, 100, our_cid, 23, "one", 2), out), Opened::data);
  EXPECT_EQ(s.open(hand_cid_record(s.peer_keys, 1, 100, our_cid, 23, "one", 2), out), Opened::replayed);
  EXPECT_EQ(s.open(hand_cid_record(s.peer_keys, 1, 98, our_cid, 23, "older", 0), out), Opened::data);
  EXPECT_EQ(s.open(hand_cid_record(s.peer_keys, 1, 98, our_cid, 23, "older", 0), out), Opened::replayed);
  EXPECT_EQ(s.open(hand_cid_record(s.peer_keys, 1, 300, our_cid, 23, "jump", 0), out), Opened::data);
  // Now 100 is more than the window (64) behind.
  EXPECT_EQ(s.open(hand_cid_record(s.peer_keys, 1, 200, our_cid, 23, "too old", 0), out), Opened::replayed);
  ASSERT_EQ(out.plaintexts.size(), 3u);
  EXPECT_EQ(text(out.plaintexts[0]), "one");
  EXPECT_EQ(text(out.plaintexts[2]), "jump");
  // The inner type decides: a close_notify alert inside a tls12_cid record ends the session.
  const Bytes close_notify = {std::byte{1}, std::byte{0}};
  EXPECT_EQ(s.open(hand_cid_record(s.peer_keys, 1, 301, our_cid, 21, text(close_notify), 0), out),
            Opened::peer_closed);
}

TEST(CidLean, ARecordThatFailsAuthenticationLeavesTheWindowAlone) {
  using Opened = detail::RecordLayer::Opened;
  LeanCid s;
  Output out;
  auto forged = hand_cid_record(s.peer_keys, 1, 50, our_cid, 23, "forged", 0);
  forged.back() ^= std::byte{0x80};  // tag
  EXPECT_EQ(s.open(forged, out), Opened::rejected);
  // The real record with that number still opens: the forgery did not mark it.
  EXPECT_EQ(s.open(hand_cid_record(s.peer_keys, 1, 50, our_cid, 23, "real", 0), out), Opened::data);
  ASSERT_EQ(out.plaintexts.size(), 1u);
  EXPECT_EQ(text(out.plaintexts[0]), "real");
}

TEST(CidLean, PlainRecordsAndOtherCidsAreRefusedOnceACidIsNegotiated) {
  using Opened = detail::RecordLayer::Opened;
  LeanCid s;
  Output out;
  Bytes plain;
  ASSERT_TRUE(s.crypto->seal_record(*detail::find_suite(gcm_suite), s.peer_keys, 23, 1, 1, bytes("plain"), &plain));
  EXPECT_EQ(s.layer->open(*wire::next_record(plain, nullptr, 6), out), Opened::rejected);
  Bytes other = our_cid;
  other[5] = std::byte{0x99};
  EXPECT_EQ(s.open(hand_cid_record(s.peer_keys, 1, 2, other, 23, "other", 0), out), Opened::rejected);
  EXPECT_TRUE(out.plaintexts.empty());
}

TEST(CidLean, SealsWithThePeersCidOrPlainWithoutOne) {
  const Bytes peer_cid = {std::byte{0xaa}, std::byte{0xbb}};
  LeanCid with(peer_cid);
  Output out;
  ASSERT_TRUE(with.layer->seal(bytes("answer"), out));
  ASSERT_EQ(out.datagrams.size(), 1u);
  EXPECT_EQ(out.datagrams[0], hand_cid_record(test_keys(5), 1, 0, peer_cid, 23, "answer", 0));
  LeanCid without;
  Output plain;
  ASSERT_TRUE(without.layer->seal(bytes("answer"), plain));
  EXPECT_EQ(std::to_integer<int>(plain.datagrams[0][0]), 23);
}

// --- negotiation, engine client role against server role, in memory ---

std::unique_ptr<ServerContext> cid_server(std::size_t length, std::uint8_t node_id = 0x42) {
  auto store = std::make_shared<PskStore>();
  store->add("cid-device", "cid-key");
  ServerSettings s;
  s.psk = store;
  s.connection_id = {length, node_id};
  std::string error;
  auto c = ServerContext::create(s, &error);
  EXPECT_TRUE(c) << error;
  return c;
}

std::unique_ptr<ClientContext> cid_client(std::optional<Bytes> offer, std::string ciphers = {}) {
  ClientSettings s;
  s.psk_identity = "cid-device";
  s.psk_key = "cid-key";
  s.ciphers = std::move(ciphers);
  s.connection_id = std::move(offer);
  std::string error;
  auto c = ClientContext::create(std::move(s), &error);
  EXPECT_TRUE(c) << error;
  return c;
}

Address device() { return *Address::parse("192.0.2.30:5684"); }

struct Pair {
  std::unique_ptr<ServerContext> server_context;
  std::unique_ptr<ClientContext> client_context;
  std::unique_ptr<Engine> server;
  std::unique_ptr<Engine> client;
  std::vector<std::string> at_server, at_client;
  std::vector<Bytes> wire_to_server;  // every datagram the client sent

  // Runs datagrams both ways until neither side sends (bounded).
  void pump(Output first) {
    std::vector<Bytes> to_server = std::move(first.datagrams);
    for (int round = 0; round < 20 && !to_server.empty(); ++round) {
      std::vector<Bytes> to_client;
      for (auto& d : to_server) {
        wire_to_server.push_back(d);
        Output out;
        if (!server) {
          auto r = server_context->on_hello(device(), d, out, t0);
          if (r.engine) server = std::move(r.engine);
        } else {
          server->on_datagram(d, out, t0);
        }
        for (auto& p : out.plaintexts) at_server.push_back(text(p));
        for (auto& o : out.datagrams) to_client.push_back(std::move(o));
      }
      to_server.clear();
      for (auto& d : to_client) {
        Output out;
        client->on_datagram(d, out, t0);
        for (auto& p : out.plaintexts) at_client.push_back(text(p));
        for (auto& o : out.datagrams) to_server.push_back(std::move(o));
      }
    }
  }
  void connect() {
    Output out;
    client = client_context->connect(device(), out, t0);
    ASSERT_TRUE(client);
    pump(std::move(out));
    ASSERT_TRUE(server);
    ASSERT_EQ(server->state(), Engine::State::established);
    ASSERT_EQ(client->state(), Engine::State::established);
  }
  void request(std::string_view message) {
    Output out;
    ASSERT_TRUE(client->send(bytes(message), out));
    pump(std::move(out));
  }
  void answer(std::string_view message) {
    Output out;
    ASSERT_TRUE(server->send(bytes(message), out));
    for (auto& d : out.datagrams) {
      Output in;
      client->on_datagram(d, in, t0);
      for (auto& p : in.plaintexts) at_client.push_back(text(p));
    }
  }
};

int first_type(const Bytes& datagram) { return std::to_integer<int>(datagram[0]); }

// Every record type of every datagram the client sent at epoch 1.
std::vector<int> epoch1_types(const std::vector<Bytes>& datagrams, std::size_t cid_length) {
  std::vector<int> types;
  for (const auto& d : datagrams) {
    std::span<const std::byte> rest = d;
    while (!rest.empty()) {
      const auto r = wire::next_record(rest, &rest, cid_length);
      if (!r) break;
      if (r->epoch == 1) types.push_back(r->type);
    }
  }
  return types;
}

TEST(CidHandshake, PskClientOfferingAnEmptyCidGetsOursAndSendsCidRecordsFromItsFinished) {
  Pair p{cid_server(6), cid_client(Bytes{}), nullptr, nullptr, {}, {}, {}};
  p.connect();
  const auto issued = Bytes(p.server->connection_id().begin(), p.server->connection_id().end());
  ASSERT_EQ(issued.size(), 6u);
  EXPECT_EQ(issued[0], std::byte{0x42});  // node_id
  EXPECT_EQ(Bytes(p.client->peer_connection_id().begin(), p.client->peer_connection_id().end()), issued);
  EXPECT_TRUE(p.server->peer_connection_id().empty());  // the client asked for plain records
  EXPECT_TRUE(p.client->connection_id().empty());
  // The client's Finished (its first epoch-1 record) was a tls12_cid record: translated for OpenSSL.
  const auto handshake_types = epoch1_types(p.wire_to_server, 6);
  ASSERT_FALSE(handshake_types.empty());
  for (int type : handshake_types) EXPECT_EQ(type, 25);

  p.request("GET /cid");
  EXPECT_EQ(p.at_server, std::vector<std::string>{"GET /cid"});
  EXPECT_EQ(first_type(p.wire_to_server.back()), 25);
  EXPECT_TRUE(p.server->lean());
  EXPECT_EQ(Bytes(p.server->connection_id().begin(), p.server->connection_id().end()), issued);
  p.answer("2.05");
  EXPECT_EQ(p.at_client, std::vector<std::string>{"2.05"});
  p.request("GET /again");
  EXPECT_EQ(p.at_server.back(), "GET /again");
  EXPECT_TRUE(p.client->lean());
}

TEST(CidHandshake, BothDirectionsUseCidsWhenTheClientAsksForOne) {
  const Bytes client_cid = {std::byte{0xc1}, std::byte{0xc2}, std::byte{0xc3}};
  Pair p{cid_server(4), cid_client(client_cid, "PSK-AES128-GCM-SHA256"), nullptr, nullptr, {}, {}, {}};
  p.connect();
  EXPECT_EQ(Bytes(p.server->peer_connection_id().begin(), p.server->peer_connection_id().end()), client_cid);
  EXPECT_EQ(p.server->connection_id().size(), 4u);
  p.request("GET /both");
  EXPECT_EQ(p.at_server, std::vector<std::string>{"GET /both"});
  Output out;
  ASSERT_TRUE(p.server->send(bytes("2.05 both"), out));
  ASSERT_EQ(out.datagrams.size(), 1u);
  EXPECT_EQ(first_type(out.datagrams[0]), 25);
  const auto parsed = wire::next_record(out.datagrams[0], nullptr, client_cid.size());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(Bytes(parsed->cid.begin(), parsed->cid.end()), client_cid);
  Output in;
  p.client->on_datagram(out.datagrams[0], in, t0);
  ASSERT_EQ(in.plaintexts.size(), 1u);
  EXPECT_EQ(text(in.plaintexts[0]), "2.05 both");
}

TEST(CidHandshake, ClientsThatDoNotOfferItAndServersWithLengthZeroStayPlain) {
  for (auto [length, offer] : {std::pair{std::size_t{6}, std::optional<Bytes>()},
                               std::pair{std::size_t{0}, std::optional<Bytes>(Bytes{})}}) {
    Pair p{cid_server(length), cid_client(offer), nullptr, nullptr, {}, {}, {}};
    p.connect();
    EXPECT_TRUE(p.server->connection_id().empty());
    EXPECT_TRUE(p.client->peer_connection_id().empty());
    for (int type : epoch1_types(p.wire_to_server, 0)) EXPECT_NE(type, 25);
    p.request("GET /plain");
    EXPECT_EQ(p.at_server, std::vector<std::string>{"GET /plain"});
    EXPECT_EQ(first_type(p.wire_to_server.back()), 23);
  }
}

TEST(CidHandshake, TheWorkersIssuerDecidesAndNoFreeCidMeansNoCid) {
  auto server = cid_server(5);
  int asked = 0;
  server->set_cid_issuer([&asked](std::span<std::byte> cid) {
    ++asked;
    for (std::size_t i = 0; i < cid.size(); ++i) cid[i] = static_cast<std::byte>(0x10 + i);
    return true;
  });
  Pair p{std::move(server), cid_client(Bytes{}), nullptr, nullptr, {}, {}, {}};
  p.connect();
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(p.server->connection_id()[4], std::byte{0x14});

  auto full = cid_server(5);
  full->set_cid_issuer([](std::span<std::byte>) { return false; });
  Pair q{std::move(full), cid_client(Bytes{}), nullptr, nullptr, {}, {}, {}};
  q.connect();
  EXPECT_TRUE(q.server->connection_id().empty());
  q.request("GET /no-cid");
  EXPECT_EQ(q.at_server, std::vector<std::string>{"GET /no-cid"});
}

TEST(CidHandshake, AWrongKeyStillFailsTheHandshakeWithCids) {
  auto server = cid_server(6);
  ClientSettings s;
  s.psk_identity = "cid-device";
  s.psk_key = "not-the-key";
  s.connection_id = Bytes{};
  std::string error;
  auto client = ClientContext::create(std::move(s), &error);
  Pair p{std::move(server), std::move(client), nullptr, nullptr, {}, {}, {}};
  Output out;
  p.client = p.client_context->connect(device(), out, t0);
  p.pump(std::move(out));
  ASSERT_TRUE(p.server);
  EXPECT_EQ(p.server->state(), Engine::State::closed);
  EXPECT_EQ(p.server->failure(), Failure::handshake_failed);
}

// RFC 9146 6: the address may follow only a record that authenticated and is the newest seen.
TEST(CidHandshake, OnlyTheNewestAuthenticatedRecordIsMarkedNewest) {
  Pair p{cid_server(6), cid_client(Bytes{}), nullptr, nullptr, {}, {}, {}};
  p.connect();
  p.request("GET /first");
  ASSERT_TRUE(p.server->lean());
  Output a, b;
  ASSERT_TRUE(p.client->send(bytes("GET /a"), a));
  ASSERT_TRUE(p.client->send(bytes("GET /b"), b));
  auto deliver = [&](const Bytes& d) {
    Output out;
    p.server->on_datagram(d, out, t0);
    return out;
  };
  const auto newer = deliver(b.datagrams.at(0));
  EXPECT_TRUE(newer.newest);
  EXPECT_EQ(newer.plaintexts.size(), 1u);
  const auto reordered = deliver(a.datagrams.at(0));  // authenticates, but an older number
  EXPECT_FALSE(reordered.newest);
  EXPECT_EQ(reordered.plaintexts.size(), 1u);
  const auto replayed = deliver(b.datagrams.at(0));
  EXPECT_FALSE(replayed.newest);
  EXPECT_TRUE(replayed.plaintexts.empty());
  Bytes forged = b.datagrams.at(0);
  forged[5] = std::byte{0x7f};  // sequence far ahead, tag no longer matches
  const auto failed = deliver(forged);
  EXPECT_FALSE(failed.newest);
  EXPECT_TRUE(failed.plaintexts.empty());
}

TEST(CidPersist, ExportAndImportKeepTheCids) {
  Pair p{cid_server(6), cid_client(Bytes{}), nullptr, nullptr, {}, {}, {}};
  p.connect();
  p.request("GET /persist");
  ASSERT_TRUE(p.server->lean());
  const auto state = p.server->export_state();
  ASSERT_TRUE(state);
  EXPECT_EQ(state->local_cid.size(), 6u);
  auto restored = deserialize(serialize(*state));
  ASSERT_TRUE(restored);
  auto imported = Engine::import_state(*p.server_context, *restored, 1000);
  ASSERT_TRUE(imported);
  EXPECT_EQ(Bytes(imported->connection_id().begin(), imported->connection_id().end()), state->local_cid);
  Output out;
  ASSERT_TRUE(p.client->send(bytes("GET /after"), out));
  Output in;
  imported->on_datagram(out.datagrams.at(0), in, t0);
  ASSERT_EQ(in.plaintexts.size(), 1u);
  EXPECT_EQ(text(in.plaintexts[0]), "GET /after");
}

}  // namespace
}  // namespace coapgw::dtls
