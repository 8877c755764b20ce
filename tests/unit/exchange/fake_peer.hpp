// A fake clock, random source and peer for driving exchange::Layer without sockets: the Sink records
// every message the layer sends (parsed back), every request, ended CON and anomaly it reports.
#pragma once

#include <string_view>
#include <vector>

#include "coap/block.hpp"
#include "coap/option.hpp"
#include "exchange/layer.hpp"
#include "session/table.hpp"

namespace coapgw::exchange::test {

using namespace std::chrono_literals;

class FakePeer : public Sink {
 public:
  SendResult send(session::Session&, std::span<const std::byte> message) override {
    coap::MessageView v;
    EXPECT_EQ(coap::parse(message, v), coap::ParseError::ok);
    sent.push_back(coap::Message::from_view(v));
    return refuse ? SendResult::refused : SendResult::sent;
  }
  ExchangeCache* dedup_cache(session::Session&) override { return serves ? &cache : nullptr; }
  void on_request(session::Session&, const coap::MessageView& m, TimePoint) override {
    requests.push_back(coap::Message::from_view(m));
  }
  void on_duplicate(session::Session&) override { ++duplicates; }
  void on_con_ended(session::Session&, std::uint16_t mid, Ending how) override { ended.emplace_back(mid, how); }
  void on_anomaly(session::Session&, Anomaly what) override { anomalies.push_back(what); }

  bool serves = true;
  bool refuse = false;
  ExchangeCache cache{64, 247s};
  std::vector<coap::Message> sent;
  std::vector<coap::Message> requests;
  std::vector<std::pair<std::uint16_t, Ending>> ended;
  std::vector<Anomaly> anomalies;
  int duplicates = 0;
};

// Feeds `m` (serialized and parsed again, as off the wire) to the layer.
inline void deliver(Layer& layer, session::Session& s, const coap::Message& m, TimePoint now) {
  auto bytes = coap::serialize(m);
  coap::MessageView v;
  ASSERT_EQ(coap::parse(bytes, v), coap::ParseError::ok);
  layer.on_message(s, v, now);
}

inline coap::Message message(coap::Type type, std::uint8_t code, std::uint16_t mid,
                             std::vector<std::byte> token = {}, std::string_view payload = {}) {
  coap::Message m;
  m.type = type;
  m.code = code;
  m.message_id = mid;
  m.token = std::move(token);
  auto b = coap::as_bytes(payload);
  m.payload.assign(b.begin(), b.end());
  return m;
}

inline void add_block(coap::Message& m, std::uint16_t number, coap::BlockValue b) {
  std::array<std::byte, 3> buf{};
  m.add_option(number, std::span<const std::byte>(buf.data(), coap::encode_block(b, buf)));
}

inline std::optional<coap::BlockValue> block_of(const coap::Message& m, std::uint16_t number) {
  auto* o = m.find(number);
  if (o == nullptr) return std::nullopt;
  return coap::decode_block(o->value);
}

// One owner's layer over one session of a real session::Table, at a clock the test moves.
struct Fixture {
  explicit Fixture(LayerSettings settings = {}, session::Type type = session::Type::server,
                   session::Proto proto = session::Proto::udp)
      : table(nullptr, budget, session::Table::Settings{}),
        layer(std::move(settings), peer, [this] { return high_random ? ~std::uint64_t{0} : ++counter; }) {
    session::Key key{*Address::parse("192.0.2.1:5683"), 5683, proto, 0};
    auto local = *Address::parse("127.0.0.1:5683");
    s = type == session::Type::client ? table.create_client(key, local, now)
                                      : table.create_server(key, local, -1, now, session::State::established);
  }
  session::Budget budget{4};
  session::Table table;
  FakePeer peer;
  // Small values (1, 2, ...: tokens) make every first timeout exactly ACK_TIMEOUT; high_random the
  // longest one, ACK_TIMEOUT * ACK_RANDOM_FACTOR.
  std::uint64_t counter = 0;
  bool high_random = false;
  Layer layer;
  TimePoint now = TimePoint{} + 1000s;
  session::Session* s = nullptr;

  void advance(std::chrono::milliseconds d) {
    now += d;
    layer.on_timer(now);
  }
};

}  // namespace coapgw::exchange::test
