// Every reason the codec gives for refusing a datagram is counted under the same name.
#include "server/bad_input.hpp"

#include <gtest/gtest.h>

namespace coapgw::server {
namespace {

TEST(BadInput, ParseErrorsKeepTheirNamesAsReasons) {
  for (int e = static_cast<int>(coap::ParseError::too_short); e <= static_cast<int>(coap::ParseError::empty_with_content);
       ++e) {
    const auto error = static_cast<coap::ParseError>(e);
    EXPECT_EQ(metrics::name(bad_reason(error)), coap::to_string(error)) << e;
  }
}

}  // namespace
}  // namespace coapgw::server
