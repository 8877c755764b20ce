// TlsPskIdentity against the real bytes of an OpenSSL client (memory BIOs, a real server answering
// it): TLS 1.3 (ClientHello pre_shared_key) and TLS 1.2 (ClientKeyExchange, PSK and ECDHE_PSK),
// fed whole, a byte at a time, with the handshake messages re-cut into tiny records and packed into
// one record; and the bounds: malformed, oversized, not a handshake, no PSK.
#include <gtest/gtest.h>

#include <openssl/ssl.h>

#include <cstring>
#include <string>
#include <vector>

#include "transport/tls_psk_identity.hpp"

namespace coapgw::transport {
namespace {

using Bytes = std::vector<std::byte>;
using State = TlsPskIdentity::State;

std::string g_identity = "sensor-42@tenant-a";
constexpr char key[] = "registry-key-0001";

unsigned server_psk(SSL*, const char*, unsigned char* psk, unsigned max) {
  if (sizeof key - 1 > max) return 0;
  std::memcpy(psk, key, sizeof key - 1);
  return sizeof key - 1;
}
unsigned client_psk(SSL*, const char*, char* id, unsigned max_id, unsigned char* psk, unsigned max) {
  if (g_identity.size() + 1 > max_id || sizeof key - 1 > max) return 0;
  std::memcpy(id, g_identity.c_str(), g_identity.size() + 1);
  std::memcpy(psk, key, sizeof key - 1);
  return sizeof key - 1;
}

Bytes drain(BIO* bio) {
  Bytes out;
  std::byte buf[4096];
  for (int n; (n = BIO_read(bio, buf, sizeof buf)) > 0;) out.insert(out.end(), buf, buf + n);
  return out;
}

// Everything an OpenSSL PSK client sends until its handshake is done, answered by a real server.
Bytes client_bytes(int version, const char* suites, bool with_psk = true) {
  SSL_CTX* sctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_cipher_list(sctx, "PSK-AES128-GCM-SHA256:ECDHE-PSK-CHACHA20-POLY1305");
  SSL_CTX_set_psk_server_callback(sctx, server_psk);
  SSL_CTX_set_min_proto_version(cctx, version);
  SSL_CTX_set_max_proto_version(cctx, version);
  SSL_CTX_set_cipher_list(cctx, suites);
  if (with_psk) SSL_CTX_set_psk_client_callback(cctx, client_psk);
  SSL* client = SSL_new(cctx);
  SSL* server = SSL_new(sctx);
  SSL_set_bio(client, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
  SSL_set_bio(server, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  Bytes sent;
  for (int round = 0; round < 8; ++round) {
    SSL_do_handshake(client);
    const Bytes c = drain(SSL_get_wbio(client));
    sent.insert(sent.end(), c.begin(), c.end());
    BIO_write(SSL_get_rbio(server), c.data(), static_cast<int>(c.size()));
    SSL_do_handshake(server);
    const Bytes s = drain(SSL_get_wbio(server));
    BIO_write(SSL_get_rbio(client), s.data(), static_cast<int>(s.size()));
    if (SSL_is_init_finished(client) && SSL_is_init_finished(server)) break;
    if (c.empty() && s.empty()) break;
  }
  SSL_free(client);
  SSL_free(server);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
  return sent;
}

// The handshake messages of the leading plaintext handshake records (up to the first other record).
Bytes handshake_messages(const Bytes& stream) {
  Bytes out;
  for (std::size_t at = 0; at + 5 <= stream.size(); ) {
    const auto type = std::to_integer<unsigned>(stream[at]);
    const std::size_t length = (std::to_integer<std::size_t>(stream[at + 3]) << 8) | std::to_integer<std::size_t>(stream[at + 4]);
    if (type != 22) break;
    out.insert(out.end(), stream.begin() + static_cast<long>(at + 5), stream.begin() + static_cast<long>(at + 5 + length));
    at += 5 + length;
  }
  return out;
}

// `messages` as handshake records of at most `size` bytes each.
Bytes as_records(const Bytes& messages, std::size_t size) {
  Bytes out;
  for (std::size_t at = 0; at < messages.size(); at += size) {
    const std::size_t n = std::min(size, messages.size() - at);
    out.insert(out.end(), {std::byte{22}, std::byte{3}, std::byte{3}, std::byte(n >> 8), std::byte(n & 0xff)});
    out.insert(out.end(), messages.begin() + static_cast<long>(at), messages.begin() + static_cast<long>(at + n));
  }
  return out;
}

State feed_in_pieces(TlsPskIdentity& p, const Bytes& bytes, std::size_t piece) {
  for (std::size_t at = 0; at < bytes.size() && p.state() == State::reading; at += piece)
    p.feed(std::span(bytes).subspan(at, std::min(piece, bytes.size() - at)));
  return p.state();
}

struct Case {
  int version;
  const char* suites;
};
class TlsPskIdentityReal : public ::testing::TestWithParam<Case> {};

TEST_P(TlsPskIdentityReal, WholeByteAtATimeAndReRecorded) {
  const Bytes stream = client_bytes(GetParam().version, GetParam().suites);
  ASSERT_FALSE(stream.empty());
  {
    TlsPskIdentity p;
    EXPECT_EQ(p.feed(stream), State::found);
    EXPECT_EQ(p.identity(), g_identity);
  }
  {
    TlsPskIdentity p;
    EXPECT_EQ(feed_in_pieces(p, stream, 1), State::found);
    EXPECT_EQ(p.identity(), g_identity);
  }
  const Bytes messages = handshake_messages(stream);
  for (std::size_t record : {std::size_t{1}, std::size_t{3}, std::size_t{100}, messages.size()}) {
    TlsPskIdentity p;  // each message split over records, or all of them packed into one
    EXPECT_EQ(feed_in_pieces(p, as_records(messages, record), 7), State::found) << record;
    EXPECT_EQ(p.identity(), g_identity) << record;
  }
}

INSTANTIATE_TEST_SUITE_P(Tls, TlsPskIdentityReal,
                         ::testing::Values(Case{TLS1_3_VERSION, "PSK-AES128-GCM-SHA256"},
                                           Case{TLS1_2_VERSION, "PSK-AES128-GCM-SHA256"},
                                           Case{TLS1_2_VERSION, "ECDHE-PSK-CHACHA20-POLY1305"}));

TEST(TlsPskIdentity, Tls13FoundInTheClientHelloAlone) {
  const Bytes stream = client_bytes(TLS1_3_VERSION, "PSK-AES128-GCM-SHA256");
  const std::size_t first = 5 + ((std::to_integer<std::size_t>(stream[3]) << 8) | std::to_integer<std::size_t>(stream[4]));
  TlsPskIdentity p;
  EXPECT_EQ(p.feed(std::span(stream).first(first)), State::found);
  EXPECT_EQ(p.identity(), g_identity);
}

TEST(TlsPskIdentity, LongestIdentityTakenOneLongerRefused) {
  const std::string saved = g_identity;
  g_identity.assign(TlsPskIdentity::max_identity - 1, 'x');  // OpenSSL's client sends at most 255
  TlsPskIdentity p;
  EXPECT_EQ(p.feed(client_bytes(TLS1_2_VERSION, "PSK-AES128-GCM-SHA256")), State::found);
  EXPECT_EQ(p.identity(), g_identity);
  g_identity = saved;
  Bytes cke{std::byte{1}, std::byte{0}};  // a 256-byte identity
  cke.resize(2 + TlsPskIdentity::max_identity, std::byte{'y'});
  EXPECT_EQ(client_key_exchange_psk_identity(cke).size(), TlsPskIdentity::max_identity);
  cke[1] = std::byte{1};  // 257 bytes
  cke.push_back(std::byte{'y'});
  EXPECT_EQ(client_key_exchange_psk_identity(cke), "");
}

TEST(TlsPskIdentity, NoPskClientGivesUpAtItsFirstNonHandshakeRecord) {
  const Bytes hello = client_bytes(TLS1_3_VERSION, "PSK-AES128-GCM-SHA256", /*with_psk=*/false);
  TlsPskIdentity p;
  // Without a PSK callback the TLS 1.3 client offers no pre_shared_key.
  EXPECT_EQ(p.feed(hello), State::reading);
  const Bytes change_cipher_spec{std::byte{20}, std::byte{3}, std::byte{3}, std::byte{0}, std::byte{1}, std::byte{1}};
  EXPECT_EQ(p.feed(change_cipher_spec), State::none);
  EXPECT_EQ(p.identity(), "");
}

TEST(TlsPskIdentity, NotTlsOrNotAClientHelloFirst) {
  const std::string junk = "GET / HTTP/1.1\r\n\r\n";
  TlsPskIdentity a;
  EXPECT_EQ(a.feed(std::as_bytes(std::span(junk.data(), junk.size()))), State::none);
  TlsPskIdentity b;  // a ClientKeyExchange before any ClientHello
  const Bytes cke{std::byte{16}, std::byte{0}, std::byte{0}, std::byte{3}, std::byte{0}, std::byte{1}, std::byte{'a'}};
  EXPECT_EQ(b.feed(as_records(cke, 100)), State::none);
  TlsPskIdentity c;  // a record over 2^14
  EXPECT_EQ(c.feed(Bytes{std::byte{22}, std::byte{3}, std::byte{1}, std::byte{0x40}, std::byte{1}}), State::none);
  TlsPskIdentity d;  // an empty record
  EXPECT_EQ(d.feed(Bytes{std::byte{22}, std::byte{3}, std::byte{1}, std::byte{0}, std::byte{0}}), State::none);
}

TEST(TlsPskIdentity, OversizedClientHelloGivesUpBeforeBufferingIt) {
  const std::size_t n = TlsPskIdentity::max_message + 1;
  const Bytes header{std::byte{1}, std::byte(n >> 16), std::byte((n >> 8) & 0xff), std::byte(n & 0xff)};
  TlsPskIdentity p;
  EXPECT_EQ(p.feed(as_records(header, 100)), State::none);
}

TEST(TlsPskIdentity, SkippedMessagesCountAgainstTheScanBound) {
  const Bytes stream = client_bytes(TLS1_2_VERSION, "PSK-AES128-GCM-SHA256", /*with_psk=*/true);
  // The ClientHello, then "certificates" (type 11) without end: never buffered, bounded in all.
  Bytes messages = handshake_messages(stream);
  const std::size_t hello = 4 + ((std::to_integer<std::size_t>(messages[2]) << 8) | std::to_integer<std::size_t>(messages[3]));
  messages.resize(hello);
  messages.insert(messages.end(), {std::byte{11}, std::byte{0xff}, std::byte{0xff}, std::byte{0xff}});
  messages.resize(messages.size() + 2 * TlsPskIdentity::max_scanned, std::byte{0});
  TlsPskIdentity p;
  EXPECT_EQ(feed_in_pieces(p, as_records(messages, 16384), 1000), State::none);
}

TEST(TlsPskIdentity, ClientKeyExchangeLayouts) {
  auto body = [](std::initializer_list<int> v) {
    Bytes b;
    for (int x : v) b.push_back(std::byte(x));
    return b;
  };
  EXPECT_EQ(client_key_exchange_psk_identity(body({0, 2, 'i', 'd'})), "id");                         // PSK
  EXPECT_EQ(client_key_exchange_psk_identity(body({0, 2, 'i', 'd', 2, 9, 9})), "id");                // ECDHE_PSK
  EXPECT_EQ(client_key_exchange_psk_identity(body({0, 2, 'i', 'd', 0, 2, 9, 9})), "id");             // DHE/RSA_PSK
  EXPECT_EQ(client_key_exchange_psk_identity(body({0, 2, 'i', 'd', 5, 9})), "");                     // trailing junk
  EXPECT_EQ(client_key_exchange_psk_identity(body({32, 1, 2, 3})), "");  // an ECDHE key share (X25519)
  EXPECT_EQ(client_key_exchange_psk_identity(body({0, 0})), "");         // empty identity
  EXPECT_EQ(client_key_exchange_psk_identity(body({0, 5, 'a'})), "");    // truncated
}

TEST(TlsPskIdentity, TruncatedClientHelloHasNoIdentity) {
  const Bytes messages = handshake_messages(client_bytes(TLS1_3_VERSION, "PSK-AES128-GCM-SHA256"));
  const Bytes body(messages.begin() + 4, messages.end());
  EXPECT_EQ(client_hello_psk_identity(body), g_identity);
  for (std::size_t cut = 0; cut < body.size(); cut += 13)
    EXPECT_EQ(client_hello_psk_identity(std::span(body).first(cut)), "") << cut;
}

}  // namespace
}  // namespace coapgw::transport
