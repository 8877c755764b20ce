// Restored sessions and revocation (issue 11, point 2): a reload drops the persisted sessions whose
// credentials no longer stand before any device claims them.
#include <gtest/gtest.h>

#include <chrono>

#include "server/persist.hpp"

using namespace coapgw;
using namespace coapgw::server::persist;
using namespace std::chrono_literals;

namespace {

TEST(RestoredPoolRevocation, DropIfRemovesOnlyTheRevokedAndCountsThem) {
  RestoredPool pool;
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                 .count();
  auto a = *Address::parse("127.0.0.1:1000");
  auto b = *Address::parse("127.0.0.1:1001");
  auto c = *Address::parse("127.0.0.1:1002");
  pool.add(a, {std::byte{1}}, now);
  pool.add(b, {std::byte{2}}, now);
  pool.add(c, {std::byte{2}}, now);
  // "2" stands for a state whose key was removed.
  auto revoked = [](std::span<const std::byte> state) { return state.size() == 1 && state[0] == std::byte{2}; };
  EXPECT_EQ(pool.drop_if(revoked), 2u);
  EXPECT_FALSE(pool.take(b, 300s));
  EXPECT_FALSE(pool.take(c, 300s));
  auto kept = pool.take(a, 300s);
  ASSERT_TRUE(kept);
  EXPECT_EQ((*kept)[0], std::byte{1});
  EXPECT_TRUE(pool.empty());
  EXPECT_EQ(pool.drop_if(revoked), 0u);
}

// RFC 9146: a device whose address changed while the gateway was down finds its saved session by CID.
TEST(RestoredPoolCid, PeerOfCidNamesTheSavedAddressUntilTheStateIsGone) {
  RestoredPool pool;
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                 .count();
  auto saved = *Address::parse("127.0.0.1:2000");
  const std::byte cid[] = {std::byte{9}, std::byte{1}, std::byte{0x77}};
  const std::byte other[] = {std::byte{9}, std::byte{1}, std::byte{0x78}};
  pool.add(saved, {std::byte{1}}, now, cid);
  EXPECT_EQ(pool.peer_of_cid(cid), saved);
  EXPECT_EQ(pool.peer_of_cid(other), std::nullopt);
  std::int64_t last_seen = 0;
  auto taken = pool.take(saved, 300s, &last_seen);
  ASSERT_TRUE(taken);
  EXPECT_EQ(pool.peer_of_cid(cid), std::nullopt);  // nothing waits under it now
  pool.put_back(saved, std::move(*taken), last_seen);  // a record that did not authenticate
  EXPECT_EQ(pool.peer_of_cid(cid), saved);
}

}  // namespace
