#include <gtest/gtest.h>

#include "server/live_hello.hpp"

namespace coapgw::server::live_hello {
namespace {

using namespace std::chrono_literals;
const time_point t0 = time_point{} + 1000s;

TEST(LiveHello, RecentAuthenticatedTrafficDropsTheHello) {
  EXPECT_EQ(decide(t0 + 2s, t0, {}), Verdict::drop_live);
  EXPECT_EQ(decide(t0 + 2999ms, t0, {}), Verdict::drop_live);
}

TEST(LiveHello, QuietSessionIsProbedFirst) {
  EXPECT_EQ(decide(t0 + 3s, t0, {}), Verdict::probe);
  EXPECT_EQ(decide(t0 + 1h, t0, {}), Verdict::probe);
}

TEST(LiveHello, UnansweredProbeLetsTheRebootedDeviceHandshake) {
  const time_point probe = t0 + 10s;
  EXPECT_EQ(decide(probe + 1s, t0, probe), Verdict::drop_waiting);
  EXPECT_EQ(decide(probe + 2s, t0, probe), Verdict::handshake);
  EXPECT_EQ(decide(probe + 9s, t0, probe), Verdict::handshake);
  EXPECT_EQ(decide(probe + 10s, t0, probe), Verdict::probe);  // an old probe: the device is asked again
}

TEST(LiveHello, AnsweredProbeKeepsDroppingUntilTheNextInterval) {
  const time_point probe = t0 + 10s;
  const time_point answer = probe + 100ms;
  EXPECT_EQ(decide(answer + 2s, answer, probe), Verdict::drop_live);
  EXPECT_EQ(decide(answer + 5s, answer, probe), Verdict::drop_waiting);
  EXPECT_EQ(decide(probe + 9s, answer, probe), Verdict::drop_waiting);
  EXPECT_EQ(decide(probe + 10s, answer, probe), Verdict::probe);  // at most one ping per interval
}

TEST(LiveHello, CustomTiming) {
  Timing t{1s, 500ms, 5s};
  EXPECT_EQ(decide(t0 + 999ms, t0, {}, t), Verdict::drop_live);
  EXPECT_EQ(decide(t0 + 1s, t0, {}, t), Verdict::probe);
  EXPECT_EQ(decide(t0 + 1500ms, t0, t0 + 1s, t), Verdict::handshake);
}

}  // namespace
}  // namespace coapgw::server::live_hello
