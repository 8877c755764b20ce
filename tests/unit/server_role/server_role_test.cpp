// server::ServerRole without sockets: a fake Host records what the role sends and counts, a fake
// clock drives time, and forwards go through a real upstream::Router to a `file:` route whose
// completion runs when the test polls its io_context (so a forward stays pending until then).
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <prometheus/counter.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "../exchange/fake_peer.hpp"
#include "metrics/metrics.hpp"
#include "server/server_role.hpp"

namespace coapgw::server {
namespace {

using namespace std::chrono_literals;
using exchange::test::add_block;
using exchange::test::block_of;
using exchange::test::message;

class FakeHost : public ServerRole::Host {
 public:
  void send_message(session::Session&, std::span<const std::byte> bytes) override {
    coap::MessageView v;
    EXPECT_EQ(coap::parse(bytes, v), coap::ParseError::ok);
    sent.push_back(coap::Message::from_view(v));
    raw.emplace_back(bytes.begin(), bytes.end());
  }
  void flush() override { ++flushes; }
  void count_bad(metrics::BadReason reason, std::uint64_t n) override { bad.insert(bad.end(), n, reason); }
  bool draining() const override { return is_draining; }
  void exchange_done(session::Session&) override { ++exchanges_done; }
  session::TimePoint now() const override { return clock; }

  std::vector<coap::Message> sent;
  std::vector<std::vector<std::byte>> raw;
  std::vector<metrics::BadReason> bad;
  int flushes = 0;
  int exchanges_done = 0;
  bool is_draining = false;
  session::TimePoint clock = session::TimePoint{} + 1000s;
};

class ScratchFile {
 public:
  ScratchFile() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("coapgw-server-role-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".jsonl");
    std::filesystem::remove(path_);
  }
  ~ScratchFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  std::string path() const { return path_.string(); }
  std::string text() const {
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::filesystem::path path_;
};

ServerRoleSettings small_settings() {
  ServerRoleSettings s;
  s.separate_response_after = 1000ms;
  s.max_body_size = 32;
  s.exchange_cache_entries = 64;
  return s;
}

struct Role {
  explicit Role(ServerRoleSettings settings = small_settings())
      : table(nullptr, budget, session::Table::Settings{}),
        role(std::move(settings), host, metrics, [this] { return ++random; }) {
    session::Key key{*Address::parse("192.0.2.1:5683"), 5683, session::Proto::udp, 0};
    s = table.create_server(key, *Address::parse("127.0.0.1:5683"), -1, host.clock, session::State::established);
    upstream::RouteSpec route;
    route.prefix = "/sink";
    route.upstream = "file:" + file.path();
    role.install_router(std::make_shared<upstream::Router>(io, std::vector<upstream::RouteSpec>{route}));
  }
  ~Role() {
    table.close_all(session::CloseReason::shutdown);
    role.drop_pending();
    role.shutdown();
  }

  void deliver(const coap::Message& m) {
    auto bytes = coap::serialize(m);
    coap::MessageView v;
    ASSERT_EQ(coap::parse(bytes, v), coap::ParseError::ok);
    role.on_coap(*s, v, host.clock);
  }
  // Runs the forwards' completions (the file sink answers through the io_context).
  void run_upstreams() {
    io.restart();
    io.poll();
  }
  static coap::Message request(coap::Type type, std::uint8_t code, std::uint16_t mid, std::string_view path,
                               std::string_view payload = {}) {
    auto m = message(type, code, mid, {std::byte{0xab}, std::byte{0xcd}}, payload);
    m.add_option(coap::option::uri_path, coap::as_bytes(path));
    return m;
  }
  double counter(prometheus::Counter& c) { return c.Value(); }

  boost::asio::io_context io;
  ScratchFile file;
  session::Budget budget{4};
  session::Table table;
  FakeHost host;
  metrics::Metrics metrics{"test"};
  std::uint64_t random = 0;
  ServerRole role;
  session::Session* s = nullptr;
};

const std::vector<std::byte> token{std::byte{0xab}, std::byte{0xcd}};

TEST(DeviceRequests, UnroutedConIsAnsweredPiggybacked) {
  Role t;
  t.deliver(Role::request(coap::Type::con, coap::code::get, 0x1234, "nowhere"));
  ASSERT_EQ(t.host.sent.size(), 1u);
  EXPECT_EQ(t.host.sent[0].type, coap::Type::ack);
  EXPECT_EQ(t.host.sent[0].code, coap::code::not_found);
  EXPECT_EQ(t.host.sent[0].message_id, 0x1234);
  EXPECT_EQ(t.host.sent[0].token, token);
  EXPECT_EQ(t.role.in_flight(), 0u);
}

TEST(DeviceRequests, ForwardedConIsAnsweredPiggybackedWhenTheUpstreamIsQuick) {
  Role t;
  t.deliver(Role::request(coap::Type::con, coap::code::put, 0x2000, "sink", "21.5"));
  EXPECT_TRUE(t.host.sent.empty());  // pending until the upstream answers
  EXPECT_EQ(t.role.in_flight(), 1u);
  EXPECT_EQ(t.s->refcount(), 1);  // the pending forward holds the session
  t.run_upstreams();
  ASSERT_EQ(t.host.sent.size(), 1u);
  EXPECT_EQ(t.host.sent[0].type, coap::Type::ack);
  EXPECT_EQ(t.host.sent[0].code, coap::code::changed);
  EXPECT_EQ(t.host.sent[0].message_id, 0x2000);
  EXPECT_EQ(t.host.sent[0].token, token);
  EXPECT_EQ(t.role.in_flight(), 0u);
  EXPECT_EQ(t.s->refcount(), 0);
  EXPECT_GE(t.host.flushes, 1);
  EXPECT_EQ(t.host.exchanges_done, 1);  // a draining worker may close the session now
  EXPECT_NE(t.file.text().find("21.5"), std::string::npos);
}

TEST(DeviceRequests, SlowUpstreamGetsEmptyAckThenSeparateCon) {
  Role t;
  t.deliver(Role::request(coap::Type::con, coap::code::put, 0x3000, "sink", "x"));
  t.host.clock += 999ms;
  t.role.on_tick(t.host.clock);
  EXPECT_TRUE(t.host.sent.empty());  // not yet separate_response_after
  t.host.clock += 2ms;
  t.role.on_tick(t.host.clock);
  ASSERT_EQ(t.host.sent.size(), 1u);
  EXPECT_EQ(t.host.sent[0].type, coap::Type::ack);
  EXPECT_EQ(t.host.sent[0].code, coap::code::empty);
  EXPECT_EQ(t.host.sent[0].message_id, 0x3000);

  // A retransmission of the request now gets the empty ACK again, not a second forward.
  t.deliver(Role::request(coap::Type::con, coap::code::put, 0x3000, "sink", "x"));
  ASSERT_EQ(t.host.sent.size(), 2u);
  EXPECT_EQ(t.host.sent[1].code, coap::code::empty);
  EXPECT_EQ(t.role.in_flight(), 1u);

  t.run_upstreams();
  ASSERT_EQ(t.host.sent.size(), 3u);
  const auto answer = t.host.sent[2];
  EXPECT_EQ(answer.type, coap::Type::con);
  EXPECT_EQ(answer.code, coap::code::changed);
  EXPECT_EQ(answer.token, token);
  EXPECT_NE(answer.message_id, 0x3000);
  EXPECT_EQ(t.role.layer().outstanding(), 1u);  // retransmitted until the device ACKs it
  t.host.clock += 3100ms;                        // past ACK_TIMEOUT * ACK_RANDOM_FACTOR
  t.role.on_tick(t.host.clock);
  ASSERT_EQ(t.host.sent.size(), 4u);
  EXPECT_EQ(t.host.raw[3], t.host.raw[2]);

  const int done_before = t.host.exchanges_done;
  t.deliver(message(coap::Type::ack, coap::code::empty, answer.message_id));
  EXPECT_EQ(t.role.layer().outstanding(), 0u);
  EXPECT_EQ(t.host.exchanges_done, done_before + 1);
}

TEST(DeviceRequests, DuplicateConIsAnsweredFromTheCache) {
  Role t;
  t.deliver(Role::request(coap::Type::con, coap::code::put, 0x4000, "sink", "once"));
  t.run_upstreams();
  ASSERT_EQ(t.host.sent.size(), 1u);
  t.deliver(Role::request(coap::Type::con, coap::code::put, 0x4000, "sink", "once"));
  ASSERT_EQ(t.host.sent.size(), 2u);
  EXPECT_EQ(t.host.raw[1], t.host.raw[0]);  // the same answer, byte for byte
  EXPECT_EQ(t.role.in_flight(), 0u);         // not forwarded again
  t.run_upstreams();
  EXPECT_EQ(t.host.sent.size(), 2u);
  const auto text = t.file.text();
  EXPECT_EQ(text.find("once"), text.rfind("once"));  // one line in the sink
  const double before = t.counter(t.metrics.duplicates());
  t.role.flush_metrics();
  EXPECT_EQ(t.counter(t.metrics.duplicates()) - before, 1.0);
}

TEST(DeviceRequests, Block1UploadIsReassembledAndForwarded) {
  Role t;
  const std::string first(16, 'a'), second(16, 'b');
  auto b0 = Role::request(coap::Type::con, coap::code::put, 0x5000, "sink", first);
  add_block(b0, coap::option::block1, coap::BlockValue{0, true, 0});
  t.deliver(b0);
  ASSERT_EQ(t.host.sent.size(), 1u);
  EXPECT_EQ(t.host.sent[0].code, coap::code::continue_);
  auto echo = block_of(t.host.sent[0], coap::option::block1);
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->num, 0u);
  EXPECT_TRUE(echo->more);

  auto b1 = Role::request(coap::Type::con, coap::code::put, 0x5001, "sink", second);
  add_block(b1, coap::option::block1, coap::BlockValue{1, false, 0});
  t.deliver(b1);
  t.run_upstreams();
  ASSERT_EQ(t.host.sent.size(), 2u);
  EXPECT_EQ(t.host.sent[1].code, coap::code::changed);
  EXPECT_EQ(t.host.sent[1].message_id, 0x5001);
  echo = block_of(t.host.sent[1], coap::option::block1);
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->num, 1u);
  EXPECT_FALSE(echo->more);
  EXPECT_NE(t.file.text().find(first + second), std::string::npos);  // forwarded whole
}

TEST(DeviceRequests, Block1UploadOverMaxBodySizeIs413) {
  Role t;  // max_body_size 32
  for (std::uint32_t num = 0; num < 3; ++num) {
    auto b = Role::request(coap::Type::con, coap::code::put, static_cast<std::uint16_t>(0x6000 + num), "sink",
                           std::string(16, 'z'));
    add_block(b, coap::option::block1, coap::BlockValue{num, true, 0});
    t.deliver(b);
  }
  ASSERT_EQ(t.host.sent.size(), 3u);
  EXPECT_EQ(t.host.sent[1].code, coap::code::continue_);
  EXPECT_EQ(t.host.sent[2].code, coap::code::request_entity_too_large);
  auto* size1 = t.host.sent[2].find(coap::option::size1);
  ASSERT_NE(size1, nullptr);
  EXPECT_EQ(coap::decode_uint(size1->value), 32u);
  ASSERT_EQ(t.host.bad.size(), 1u);
  EXPECT_EQ(t.host.bad[0], metrics::BadReason::body_too_large);
  EXPECT_EQ(t.role.in_flight(), 0u);
}

TEST(DeviceRequests, UnknownCriticalOptionIs402ForConAndDroppedForNon) {
  Role t;
  auto con = Role::request(coap::Type::con, coap::code::get, 0x7000, "sink");
  con.add_option(65001, coap::as_bytes("x"));  // odd: critical, and unknown
  t.deliver(con);
  ASSERT_EQ(t.host.sent.size(), 1u);
  EXPECT_EQ(t.host.sent[0].type, coap::Type::ack);
  EXPECT_EQ(t.host.sent[0].code, coap::code::bad_option);
  auto non = Role::request(coap::Type::non, coap::code::get, 0x7001, "sink");
  non.add_option(65001, coap::as_bytes("x"));
  t.deliver(non);
  EXPECT_EQ(t.host.sent.size(), 1u);
  EXPECT_EQ(t.role.in_flight(), 0u);
}

TEST(DeviceRequests, DrainingRefusesNewForwardsWith503) {
  Role t;
  t.host.is_draining = true;
  t.deliver(Role::request(coap::Type::con, coap::code::put, 0x8000, "sink", "x"));
  ASSERT_EQ(t.host.sent.size(), 1u);
  EXPECT_EQ(t.host.sent[0].code, coap::code::service_unavailable);
  auto* max_age = t.host.sent[0].find(coap::option::max_age);
  ASSERT_NE(max_age, nullptr);
  EXPECT_EQ(coap::decode_uint(max_age->value), 5u);
  EXPECT_EQ(t.role.in_flight(), 0u);
}

TEST(DeviceRequests, MalformedConInASessionIsReset) {
  Role t;
  // A CON header claiming an 8-byte token with none present.
  const std::vector<std::byte> bad{std::byte{0x48}, std::byte{0x01}, std::byte{0x12}, std::byte{0x34}};
  t.role.on_malformed(*t.s, bad, coap::ParseError::truncated_token);
  ASSERT_EQ(t.host.sent.size(), 1u);
  EXPECT_EQ(t.host.sent[0].type, coap::Type::rst);
  EXPECT_EQ(t.host.sent[0].message_id, 0x1234);
  EXPECT_EQ(t.host.bad.size(), 1u);
}

TEST(DeviceRequests, ClosedSessionDropsItsSeparateAnswer) {
  Role t;
  t.deliver(Role::request(coap::Type::con, coap::code::put, 0x9000, "sink", "x"));
  t.host.clock += 1500ms;
  t.role.on_tick(t.host.clock);  // empty ACK
  ASSERT_EQ(t.host.sent.size(), 1u);
  t.table.close(*t.s, session::CloseReason::disconnected);
  t.role.drop_session(*t.s);
  t.run_upstreams();
  EXPECT_EQ(t.host.sent.size(), 1u);  // no answer to a closed session
  EXPECT_EQ(t.role.in_flight(), 0u);
}

}  // namespace
}  // namespace coapgw::server
