// RFC 6690 writer.
#include <gtest/gtest.h>

#include "coap/link_format.hpp"

namespace coapgw::coap {
namespace {

TEST(LinkFormat, Empty) { EXPECT_EQ(write_link_format({}), ""); }

TEST(LinkFormat, Rfc6690Section5Example) {
  const std::vector<Link> links = {
      {"/sensors/temp", {{"if", "sensor"}}},
      {"/sensors/light", {{"if", "sensor"}}},
  };
  EXPECT_EQ(write_link_format(links), R"(</sensors/temp>;if="sensor",</sensors/light>;if="sensor")");
}

TEST(LinkFormat, QuotingRules) {
  const std::vector<Link> links = {
      {"/t",
       {{"rt", "temperature-c"}, {"ct", "0"}, {"sz", "1152"}, {"obs", ""}, {"title", "Temp"}}},
      {"/u", {{"ct", "0 41"}, {"foo", "a,b"}, {"bar", "token.x"}}},
  };
  EXPECT_EQ(write_link_format(links),
            R"(</t>;rt="temperature-c";ct=0;sz=1152;obs;title="Temp",)"
            R"(</u>;ct="0 41";foo="a,b";bar=token.x)");
}

TEST(LinkFormat, EscapesInsideQuotes) {
  const std::vector<Link> links = {{"/q", {{"title", R"(say "hi" \o/)"}}}};
  EXPECT_EQ(write_link_format(links), R"(</q>;title="say \"hi\" \\o/")");
}

TEST(LinkFormat, TargetIsKeptInsideBrackets) {
  const std::vector<Link> links = {{"/a b>c", {}}};
  EXPECT_EQ(write_link_format(links), "</a%20b%3Ec>");
}

}  // namespace
}  // namespace coapgw::coap
