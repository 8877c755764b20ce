#include "dtls/psk_identity.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace coapgw::dtls {
namespace {

void put(std::vector<std::byte>& d, std::uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i) d.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}

// One handshake message (unfragmented unless told) in a record of the given epoch.
std::vector<std::byte> record(std::uint8_t msg_type, const std::vector<std::byte>& body, std::uint16_t epoch = 0,
                              std::uint32_t offset = 0, std::uint32_t declared_length = 0) {
  std::vector<std::byte> hs;
  put(hs, msg_type, 1);
  put(hs, declared_length != 0 ? declared_length : body.size(), 3);
  put(hs, 2, 2);  // message_seq
  put(hs, offset, 3);
  put(hs, body.size(), 3);
  hs.insert(hs.end(), body.begin(), body.end());
  std::vector<std::byte> r;
  put(r, 22, 1);
  put(r, 0xfefd, 2);
  put(r, epoch, 2);
  put(r, 1, 6);
  put(r, hs.size(), 2);
  r.insert(r.end(), hs.begin(), hs.end());
  return r;
}

std::vector<std::byte> identity_body(const std::string& identity, std::size_t extra = 0) {
  std::vector<std::byte> b;
  put(b, identity.size(), 2);
  for (char c : identity) b.push_back(static_cast<std::byte>(c));
  b.resize(b.size() + extra, std::byte{0x41});  // ECDHE_PSK: the client's point follows
  return b;
}

TEST(PskIdentity, FoundInTheClientKeyExchange) {
  auto d = record(16, identity_body("device-7"));
  EXPECT_EQ(client_key_exchange_identity(d), "device-7");
  d = record(16, identity_body("ecdhe", 33));
  EXPECT_EQ(client_key_exchange_identity(d), "ecdhe");
}

TEST(PskIdentity, FoundAfterOtherRecordsOfTheFlight) {
  auto d = record(11, std::vector<std::byte>(5));  // e.g. a Certificate
  auto cke = record(16, identity_body("later"));
  d.insert(d.end(), cke.begin(), cke.end());
  std::vector<std::byte> ccs{std::byte{20}, std::byte{0xfe}, std::byte{0xfd}};
  put(ccs, 0, 2);
  put(ccs, 2, 6);
  put(ccs, 1, 2);
  ccs.push_back(std::byte{1});
  d.insert(d.end(), ccs.begin(), ccs.end());
  EXPECT_EQ(client_key_exchange_identity(d), "later");
}

TEST(PskIdentity, NoneWhenAbsentFragmentedTruncatedOrProtected) {
  EXPECT_FALSE(client_key_exchange_identity(record(1, std::vector<std::byte>(40))));  // a ClientHello
  EXPECT_FALSE(client_key_exchange_identity(record(16, identity_body("x"), 1)));      // epoch 1
  EXPECT_FALSE(client_key_exchange_identity(record(16, identity_body("frag"), 0, 0, 50)));
  EXPECT_FALSE(client_key_exchange_identity(record(16, identity_body(""))));
  auto bad = identity_body("abc");
  bad[1] = std::byte{9};  // claims more than there is
  EXPECT_FALSE(client_key_exchange_identity(record(16, bad)));
  auto d = record(16, identity_body("cut"));
  d.resize(d.size() - 2);
  EXPECT_FALSE(client_key_exchange_identity(d));
  EXPECT_FALSE(client_key_exchange_identity({}));
}

}  // namespace
}  // namespace coapgw::dtls
