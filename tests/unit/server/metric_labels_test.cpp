// The worker counts with metric label enums (metrics/labels.hpp) that it derives from the codec's
// and the session model's own enums: every such mapping keeps the name.
#include <gtest/gtest.h>

#include "server/bad_input.hpp"
#include "session/session.hpp"

namespace coapgw::server {
namespace {

TEST(MetricLabels, ParseErrorsKeepTheirNamesAsReasons) {
  for (int e = static_cast<int>(coap::ParseError::too_short); e <= static_cast<int>(coap::ParseError::empty_with_content);
       ++e) {
    const auto error = static_cast<coap::ParseError>(e);
    EXPECT_EQ(metrics::name(bad_reason(error)), coap::to_string(error)) << e;
  }
}

// worker.cpp and gateway.cpp convert by position (session enums have a `none` first where metrics
// has none): the names must agree.
TEST(MetricLabels, SessionEnumsLineUpWithTheirLabels) {
  for (std::size_t i = 0; i < metrics::count<metrics::CloseReason>; ++i)
    EXPECT_EQ(metrics::name(static_cast<metrics::CloseReason>(i)),
              session::to_string(static_cast<session::CloseReason>(i)));
  for (std::size_t p = 0; p < metrics::count<metrics::Proto>; ++p)
    EXPECT_EQ(metrics::name(static_cast<metrics::Proto>(p)), session::to_string(static_cast<session::Proto>(p + 1)));
  for (std::size_t t = 0; t < metrics::count<metrics::SessionType>; ++t)
    EXPECT_EQ(metrics::name(static_cast<metrics::SessionType>(t)),
              session::to_string(static_cast<session::Type>(t + 1)));
  for (std::size_t s = 0; s < metrics::count<metrics::SessionState>; ++s)
    EXPECT_EQ(metrics::name(static_cast<metrics::SessionState>(s)),
              session::to_string(static_cast<session::State>(s)));
  EXPECT_EQ(metrics::count<metrics::Proto>, session::proto_count - 1);
  EXPECT_EQ(metrics::count<metrics::SessionType>, session::type_count - 1);
  EXPECT_EQ(metrics::count<metrics::SessionState>, session::state_count);
}

}  // namespace
}  // namespace coapgw::server
