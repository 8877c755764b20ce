// GroupCollector: one response per responder, at most `max`, in arrival order.
#include <gtest/gtest.h>

#include "server/group_requests.hpp"

namespace coapgw::server {
namespace {

api::DownlinkAnswer from(const std::string& remote, const std::string& payload) {
  api::DownlinkAnswer a;
  a.code = 69;
  a.remote = *Address::parse(remote);
  a.payload = payload;
  return a;
}

TEST(GroupCollector, OnePerResponderUpToTheBound) {
  GroupCollector c(2);
  EXPECT_TRUE(c.add(from("127.0.0.1:1000", "a")));
  EXPECT_FALSE(c.add(from("127.0.0.1:1000", "again"))) << "a second answer from one responder";
  EXPECT_TRUE(c.add(from("127.0.0.1:1001", "b")));
  EXPECT_FALSE(c.add(from("127.0.0.1:1002", "c"))) << "over the bound";
  EXPECT_EQ(c.size(), 2u);
  auto all = c.take();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].payload, "a");
  EXPECT_EQ(all[1].payload, "b");
}

}  // namespace
}  // namespace coapgw::server
