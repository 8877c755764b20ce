// CoapUpstream against a real UDP peer: a tiny CoAP responder on 127.0.0.1:0 built with lib/coap,
// on the same io_context, whose behaviour each test scripts.
#include "upstream/coap_upstream.hpp"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <functional>

#include "coap/block.hpp"
#include "coap/message.hpp"
#include "coap/option.hpp"
#include "upstream/router.hpp"
#include "test_util.hpp"

namespace coapgw::upstream {
namespace {

namespace asio = boost::asio;
using udp = asio::ip::udp;

class Responder {
 public:
  using Handler = std::function<void(const coap::Message& request, Responder& self)>;

  explicit Responder(asio::io_context& io) : socket_(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    do_receive();
  }
  std::uint16_t port() const { return socket_.local_endpoint().port(); }
  std::string url() const { return "coap://127.0.0.1:" + std::to_string(port()); }

  void send(const coap::Message& m) {
    auto bytes = coap::serialize(m);
    socket_.send_to(asio::buffer(bytes), peer_);
  }
  // Piggybacked answer to `req`.
  void answer(const coap::Message& req, std::uint8_t code, std::string_view payload = {},
              std::vector<coap::Option> options = {}) {
    coap::Message r;
    r.type = coap::Type::ack;
    r.code = code;
    r.message_id = req.message_id;
    r.token = req.token;
    r.options = std::move(options);
    auto b = coap::as_bytes(payload);
    r.payload.assign(b.begin(), b.end());
    send(r);
  }

  Handler handler;
  std::vector<coap::Message> received;  // every datagram, in order

 private:
  void do_receive() {
    socket_.async_receive_from(asio::buffer(buf_), peer_, [this](boost::system::error_code ec, std::size_t n) {
      if (ec) return;
      coap::MessageView v;
      if (coap::parse(std::span<const std::byte>(buf_.data(), n), v) == coap::ParseError::ok) {
        received.push_back(coap::Message::from_view(v));
        if (handler) handler(received.back(), *this);
      }
      do_receive();
    });
  }
  udp::socket socket_;
  udp::endpoint peer_;
  std::array<std::byte, 2048> buf_{};
};

std::vector<std::string> strings(const coap::Message& m, std::uint16_t number) {
  std::vector<std::string> out;
  for (auto& o : m.options) {
    if (o.number == number) out.emplace_back(coap::as_string(o.value));
  }
  return out;
}

std::optional<coap::BlockValue> block(const coap::Message& m, std::uint16_t number) {
  auto* o = m.find(number);
  if (!o) return std::nullopt;
  return coap::decode_block(o->value);
}

coap::Option uint_option(std::uint16_t n, std::uint32_t v) {
  std::array<std::byte, 4> buf{};
  auto len = coap::encode_uint(v, buf);
  return coap::Option{n, std::vector<std::byte>(buf.begin(), buf.begin() + len)};
}

coap::Option block_option(std::uint16_t n, coap::BlockValue b) {
  std::array<std::byte, 3> buf{};
  auto len = coap::encode_block(b, buf);
  return coap::Option{n, std::vector<std::byte>(buf.begin(), buf.begin() + len)};
}

class CoapUpstreamTest : public ::testing::Test {
 protected:
  asio::io_context io_;
  Responder peer_{io_};
  CoapClientSettings fast_;  // short ACK timeout so retransmission tests stay quick

  void SetUp() override {
    fast_.transmission.ack_timeout = std::chrono::milliseconds(100);
  }

  RouteSpec spec(std::string url, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    RouteSpec r;
    r.prefix = "/legacy";
    r.upstream = std::move(url);
    r.timeout = timeout;
    return r;
  }

  ForwardResponse run(Upstream& up, ForwardRequest req) {
    test::Slot slot;
    up.forward(std::move(req), slot.done());
    EXPECT_EQ(slot.calls, 0);  // never answered from inside forward()
    EXPECT_TRUE(test::run_until(io_, [&] { return slot.response.has_value(); }));
    EXPECT_EQ(slot.calls, 1);
    return slot.response.value_or(ForwardResponse{});
  }
};

TEST(CoapTarget, Parses) {
  auto t = parse_coap_target("coap://127.0.0.1:5783/base/x%20y");
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->secure);
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, 5783);
  EXPECT_EQ(t->base_path, (std::vector<std::string>{"base", "x y"}));
  t = parse_coap_target("coaps://[::1]");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->secure);
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->port, 5684);
  EXPECT_EQ(parse_coap_target("coap://host")->port, 5683);
  EXPECT_FALSE(parse_coap_target("http://x"));
  EXPECT_FALSE(parse_coap_target("coap://"));
  EXPECT_FALSE(parse_coap_target("coap://h:0"));
  EXPECT_FALSE(parse_coap_target("coap://h:70000"));
  EXPECT_FALSE(parse_coap_target("coap://h:"));
  EXPECT_FALSE(parse_coap_target("coap://[::1"));
  EXPECT_FALSE(parse_coap_target("coap://h/x?y"));
  // One URL parser for every upstream (common/url): what the HTTP upstream refused, the CoAP one
  // refuses too, instead of taking "h?x" or "u@h" for a host.
  EXPECT_FALSE(parse_coap_target("coap://h?x"));
  EXPECT_FALSE(parse_coap_target("coap://u@h/x"));
  EXPECT_FALSE(parse_coap_target("coap://h x/y"));
  EXPECT_FALSE(parse_coap_target("coap://h/x#f"));
  EXPECT_FALSE(parse_coap_target("coap://h:0005683"));
}

TEST(CoapTarget, SplitsPathAndQuery) {
  EXPECT_EQ(split_path("/"), std::vector<std::string>{});
  EXPECT_EQ(split_path("/a/b%2Fc/d%"), (std::vector<std::string>{"a", "b/c", "d%"}));
  EXPECT_EQ(split_query(""), std::vector<std::string>{});
  EXPECT_EQ(split_query("a=1&b=%26"), (std::vector<std::string>{"a=1", "b=&"}));
}

TEST_F(CoapUpstreamTest, PiggybackedAnswerRelaysCodeOptionsAndPayload) {
  peer_.handler = [](const coap::Message& req, Responder& self) {
    self.answer(req, coap::code::content, "12:00",
                {uint_option(coap::option::content_format, 50), uint_option(coap::option::max_age, 30),
                 coap::Option{coap::option::etag, {std::byte{1}, std::byte{2}}}});
  };
  auto up = make_coap_upstream(io_, spec(peer_.url() + "/base"));
  ForwardRequest req;
  req.method = "PUT";
  req.path = "/time/a%20b";
  req.query = "x=1&y=%262";
  req.content_format = 0;
  req.accept = 50;
  req.payload = test::bytes("hello");
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::content);
  EXPECT_EQ(r.outcome, Outcome::ok);
  EXPECT_EQ(r.content_format, 50);
  EXPECT_EQ(r.max_age, 30u);
  EXPECT_EQ(test::text(r.payload), "12:00");
  ASSERT_EQ(r.options.size(), 1u);
  EXPECT_EQ(r.options[0].first, coap::option::etag);
  EXPECT_EQ(r.options[0].second, (std::vector<std::byte>{std::byte{1}, std::byte{2}}));

  ASSERT_EQ(peer_.received.size(), 1u);
  const auto& sent = peer_.received[0];
  EXPECT_EQ(sent.type, coap::Type::con);
  EXPECT_EQ(sent.code, coap::code::put);
  EXPECT_EQ(sent.token.size(), 8u);
  EXPECT_EQ(strings(sent, coap::option::uri_path), (std::vector<std::string>{"base", "time", "a b"}));
  EXPECT_EQ(strings(sent, coap::option::uri_query), (std::vector<std::string>{"x=1", "y=&2"}));
  ASSERT_TRUE(sent.find(coap::option::content_format));
  EXPECT_EQ(coap::decode_uint(sent.find(coap::option::content_format)->value), 0u);
  ASSERT_TRUE(sent.find(coap::option::accept));
  EXPECT_EQ(coap::decode_uint(sent.find(coap::option::accept)->value), 50u);
  EXPECT_EQ(test::text(sent.payload), "hello");
}

TEST_F(CoapUpstreamTest, EachRequestGetsItsOwnTokenAndMessageId) {
  peer_.handler = [](const coap::Message& req, Responder& self) { self.answer(req, coap::code::content, "x"); };
  auto up = make_coap_upstream(io_, spec(peer_.url()));
  ForwardRequest req;
  req.method = "GET";
  req.path = "/a";
  run(*up, req);
  run(*up, req);
  ASSERT_EQ(peer_.received.size(), 2u);
  EXPECT_NE(peer_.received[0].token, peer_.received[1].token);
  EXPECT_NE(peer_.received[0].message_id, peer_.received[1].message_id);
}

TEST_F(CoapUpstreamTest, EmptyAckThenSeparateConResponseIsAcknowledged) {
  peer_.handler = [](const coap::Message& req, Responder& self) {
    if (req.type != coap::Type::con || req.code == coap::code::empty) return;
    coap::Message ack;
    ack.type = coap::Type::ack;
    ack.message_id = req.message_id;
    self.send(ack);
    coap::Message sep;
    sep.type = coap::Type::con;
    sep.code = coap::code::created;
    sep.message_id = 0x4242;
    sep.token = req.token;
    sep.options.push_back(coap::Option{coap::option::location_path, test::bytes("r1")});
    sep.payload = test::bytes("later");
    self.send(sep);
  };
  auto up = make_coap_upstream(io_, spec(peer_.url()));
  ForwardRequest req;
  req.method = "POST";
  req.path = "/slow";
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::created);
  EXPECT_EQ(test::text(r.payload), "later");
  ASSERT_EQ(r.options.size(), 1u);
  EXPECT_EQ(r.options[0].first, coap::option::location_path);
  // The client ACKs the separate CON response with its message id.
  ASSERT_TRUE(test::run_until(io_, [&] { return peer_.received.size() >= 2; }));
  EXPECT_EQ(peer_.received[1].type, coap::Type::ack);
  EXPECT_EQ(peer_.received[1].code, coap::code::empty);
  EXPECT_EQ(peer_.received[1].message_id, 0x4242);
}

TEST_F(CoapUpstreamTest, RetransmittedSeparateResponseIsAckedAgainAndRelayedOnce) {
  peer_.handler = [](const coap::Message& req, Responder& self) {
    if (req.type != coap::Type::con) return;
    coap::Message sep;
    sep.type = coap::Type::con;
    sep.code = coap::code::content;
    sep.message_id = 0x77;
    sep.token = req.token;
    sep.payload = test::bytes("once");
    self.send(sep);
    self.send(sep);  // as if our first ACK had been lost
  };
  auto up = make_coap_upstream(io_, spec(peer_.url()));
  test::Slot slot;
  ForwardRequest req;
  req.method = "GET";
  up->forward(req, slot.done());
  ASSERT_TRUE(test::run_until(io_, [&] { return peer_.received.size() >= 3 && slot.response.has_value(); }));
  EXPECT_EQ(slot.calls, 1);
  EXPECT_EQ(test::text(slot.response->payload), "once");
  for (std::size_t i = 1; i < 3; ++i) {
    EXPECT_EQ(peer_.received[i].type, coap::Type::ack);
    EXPECT_EQ(peer_.received[i].message_id, 0x77);
  }
}

TEST_F(CoapUpstreamTest, NonSeparateResponseIsRelayed) {
  peer_.handler = [](const coap::Message& req, Responder& self) {
    coap::Message ack;
    ack.type = coap::Type::ack;
    ack.message_id = req.message_id;
    self.send(ack);
    coap::Message sep;
    sep.type = coap::Type::non;
    sep.code = coap::code::changed;
    sep.message_id = 7;
    sep.token = req.token;
    self.send(sep);
  };
  auto up = make_coap_upstream(io_, spec(peer_.url()));
  ForwardRequest req;
  req.method = "PUT";
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::changed);
  EXPECT_EQ(r.outcome, Outcome::ok);
}

TEST_F(CoapUpstreamTest, RstIsUpstreamError) {
  peer_.handler = [](const coap::Message& req, Responder& self) {
    coap::Message rst;
    rst.type = coap::Type::rst;
    rst.message_id = req.message_id;
    self.send(rst);
  };
  auto up = make_coap_upstream(io_, spec(peer_.url()));
  ForwardRequest req;
  req.method = "GET";
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::bad_gateway);
  EXPECT_EQ(r.outcome, Outcome::upstream_error);
}

TEST_F(CoapUpstreamTest, LostConIsRetransmittedWithTheSameMessageId) {
  peer_.handler = [](const coap::Message& req, Responder& self) {
    if (self.received.size() < 3) return;  // drop the first two transmissions
    self.answer(req, coap::code::content, "third time");
  };
  auto up = make_coap_upstream(io_, spec(peer_.url()), fast_);
  ForwardRequest req;
  req.method = "GET";
  auto r = run(*up, req);
  EXPECT_EQ(test::text(r.payload), "third time");
  ASSERT_EQ(peer_.received.size(), 3u);
  EXPECT_EQ(peer_.received[0].message_id, peer_.received[2].message_id);
  EXPECT_EQ(peer_.received[0].token, peer_.received[2].token);
}

TEST_F(CoapUpstreamTest, GivesUpAfterMaxRetransmit) {
  fast_.transmission.ack_timeout = std::chrono::milliseconds(10);
  fast_.transmission.max_retransmit = 2;
  auto up = make_coap_upstream(io_, spec(peer_.url()), fast_);
  ForwardRequest req;
  req.method = "GET";
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::gateway_timeout);
  EXPECT_EQ(r.outcome, Outcome::timeout);
  EXPECT_EQ(peer_.received.size(), 3u);  // the first transmission and two retransmissions
}

TEST_F(CoapUpstreamTest, RouteTimeoutCancelsTheExchange) {
  auto up = make_coap_upstream(io_, spec(peer_.url(), std::chrono::milliseconds(150)));
  ForwardRequest req;
  req.method = "GET";
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::gateway_timeout);
  EXPECT_EQ(r.outcome, Outcome::timeout);
  // A late answer for the cancelled token is rejected with RST, not relayed.
  ASSERT_EQ(peer_.received.size(), 1u);
  coap::Message late;
  late.type = coap::Type::con;
  late.code = coap::code::content;
  late.message_id = 99;
  late.token = peer_.received[0].token;
  peer_.send(late);
  ASSERT_TRUE(test::run_until(io_, [&] { return peer_.received.size() >= 2; }));
  EXPECT_EQ(peer_.received[1].type, coap::Type::rst);
  EXPECT_EQ(peer_.received[1].message_id, 99);
}

TEST_F(CoapUpstreamTest, ClosedPortIsConnectFailed) {
  std::uint16_t closed_port = 0;
  {
    udp::socket probe(io_, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    closed_port = probe.local_endpoint().port();
  }
  auto up = make_coap_upstream(io_, spec("coap://127.0.0.1:" + std::to_string(closed_port)));
  ForwardRequest req;
  req.method = "GET";
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::bad_gateway);
  EXPECT_EQ(r.outcome, Outcome::connect_failed);
}

TEST_F(CoapUpstreamTest, LargePayloadGoesBlock1) {
  std::string body(3000, 'x');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  std::string reassembled;
  peer_.handler = [&](const coap::Message& req, Responder& self) {
    auto b1 = block(req, coap::option::block1);
    ASSERT_TRUE(b1);
    reassembled += std::string(coap::as_string(req.payload));
    if (b1->more) {
      self.answer(req, coap::code::continue_, {}, {block_option(coap::option::block1, *b1)});
    } else {
      self.answer(req, coap::code::changed, {}, {block_option(coap::option::block1, *b1)});
    }
  };
  auto up = make_coap_upstream(io_, spec(peer_.url()));
  ForwardRequest req;
  req.method = "PUT";
  req.path = "/big";
  req.payload = test::bytes(body);
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::changed);
  EXPECT_EQ(reassembled, body);
  ASSERT_EQ(peer_.received.size(), 3u);  // 1024 + 1024 + 952
  ASSERT_TRUE(peer_.received[0].find(coap::option::size1));
  EXPECT_EQ(coap::decode_uint(peer_.received[0].find(coap::option::size1)->value), 3000u);
  for (auto& m : peer_.received) EXPECT_EQ(strings(m, coap::option::uri_path), std::vector<std::string>{"big"});
}

TEST_F(CoapUpstreamTest, Block1FollowsASmallerBlockSizeAskedByTheServer) {
  std::string body(2000, 'x');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 23);
  std::string reassembled;
  peer_.handler = [&](const coap::Message& req, Responder& self) {
    auto b1 = block(req, coap::option::block1);
    ASSERT_TRUE(b1);
    const std::size_t offset = std::size_t{b1->num} * b1->size();
    ASSERT_EQ(offset, reassembled.size());  // no gap, no overlap
    reassembled += std::string(coap::as_string(req.payload));
    coap::BlockValue echo = *b1;
    echo.szx = std::min<std::uint8_t>(echo.szx, 5);  // the server wants 512-byte blocks
    self.answer(req, b1->more ? coap::code::continue_ : coap::code::changed, {},
                {block_option(coap::option::block1, echo)});
  };
  auto up = make_coap_upstream(io_, spec(peer_.url()));
  ForwardRequest req;
  req.method = "POST";
  req.payload = test::bytes(body);
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::changed);
  EXPECT_EQ(reassembled, body);
  ASSERT_EQ(peer_.received.size(), 3u);  // 1024, then 512 + 464
  EXPECT_EQ(block(peer_.received[1], coap::option::block1)->num, 2u);
  EXPECT_EQ(block(peer_.received[1], coap::option::block1)->szx, 5);
}

TEST_F(CoapUpstreamTest, Block2AnswerIsFetchedWhole) {
  std::string body(2500, 'x');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('A' + i % 26);
  peer_.handler = [&](const coap::Message& req, Responder& self) {
    coap::BlockValue b{0, false, 5};  // the server picks 512-byte blocks
    if (auto asked = block(req, coap::option::block2)) b.num = asked->num;
    const std::size_t off = b.num * b.size();
    const std::size_t n = std::min(b.size(), body.size() - off);
    b.more = off + n < body.size();
    self.answer(req, coap::code::content, std::string_view(body).substr(off, n),
                {uint_option(coap::option::content_format, 0), block_option(coap::option::block2, b)});
  };
  auto up = make_coap_upstream(io_, spec(peer_.url()));
  ForwardRequest req;
  req.method = "GET";
  req.path = "/big";
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::content);
  EXPECT_EQ(r.content_format, 0);
  EXPECT_EQ(test::text(r.payload), body);
  EXPECT_EQ(peer_.received.size(), 5u);
}

TEST_F(CoapUpstreamTest, Block2AnswerBeyondTheBoundIsBadResponse) {
  fast_.max_body_bytes = 1000;
  peer_.handler = [&](const coap::Message& req, Responder& self) {
    coap::BlockValue b{0, true, 6};
    if (auto asked = block(req, coap::option::block2)) b.num = asked->num;
    self.answer(req, coap::code::content, std::string(1024, 'z'), {block_option(coap::option::block2, b)});
  };
  auto up = make_coap_upstream(io_, spec(peer_.url()), fast_);
  ForwardRequest req;
  req.method = "GET";
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::bad_gateway);
  EXPECT_EQ(r.outcome, Outcome::bad_response);
}

TEST_F(CoapUpstreamTest, ShutdownAnswersPendingRequests) {
  auto up = make_coap_upstream(io_, spec(peer_.url()));
  test::Slot slot;
  ForwardRequest req;
  req.method = "GET";
  up->forward(req, slot.done());
  ASSERT_TRUE(test::run_until(io_, [&] { return !peer_.received.empty(); }));
  up->shutdown();
  ASSERT_TRUE(test::run_until(io_, [&] { return slot.response.has_value(); }));
  EXPECT_EQ(slot.response->code, coap::code::bad_gateway);
  // After shutdown new requests are refused, still asynchronously.
  test::Slot after;
  up->forward(req, after.done());
  EXPECT_EQ(after.calls, 0);
  ASSERT_TRUE(test::run_until(io_, [&] { return after.response.has_value(); }));
  EXPECT_EQ(after.response->code, coap::code::bad_gateway);
}

// A relayed Observe registration whose relay ended before the upstream answered (hook abandoned):
// the first answer registers upstream, but the gateway forgets it there (RFC 7641 §3.6): the answer
// goes back without Observe, no cancel is left to call, and the next CON notification gets an RST.
TEST_F(CoapUpstreamTest, AnAbandonedObserveIsForgottenAtTheFirstAnswer) {
  auto hook = std::make_shared<ObserveHook>();
  int notified = 0;
  hook->notify = [&](ForwardResponse) { ++notified; };
  peer_.handler = [&](const coap::Message& req, Responder& self) {
    if (req.type != coap::Type::con || req.code != coap::code::get) return;
    hook->abandoned = true;  // the device's session closed while the upstream was answering
    self.answer(req, coap::code::content, "1", {uint_option(coap::option::observe, 1)});
  };
  auto up = make_coap_upstream(io_, spec(peer_.url()));
  ForwardRequest req;
  req.method = "GET";
  req.path = "/time";
  req.observer = hook;
  auto r = run(*up, req);
  EXPECT_EQ(r.code, coap::code::content);
  for (const auto& [number, value] : r.options) EXPECT_NE(number, coap::option::observe);
  EXPECT_FALSE(hook->cancel) << "nothing left registered to cancel";
  ASSERT_EQ(peer_.received.size(), 1u);
  ASSERT_NE(peer_.received[0].find(coap::option::observe), nullptr);

  coap::Message note;
  note.type = coap::Type::con;
  note.code = coap::code::content;
  note.message_id = 0x4242;
  note.token = peer_.received[0].token;
  note.options.push_back(uint_option(coap::option::observe, 2));
  peer_.send(note);
  ASSERT_TRUE(test::run_until(io_, [&] { return peer_.received.size() >= 2; }));
  EXPECT_EQ(peer_.received[1].type, coap::Type::rst) << "the exchange is gone: the notification is refused";
  EXPECT_EQ(peer_.received[1].message_id, 0x4242);
  EXPECT_EQ(notified, 0);
}

TEST_F(CoapUpstreamTest, RouterForwardsCoapRoutesWithStripPrefix) {
  peer_.handler = [](const coap::Message& req, Responder& self) { self.answer(req, coap::code::content, "t"); };
  RouteSpec r = spec(peer_.url());
  r.strip_prefix = true;
  Router router(io_, {r});
  test::Slot slot;
  ForwardRequest req;
  req.method = "GET";
  router.forward(*router.match("/legacy/time"), req, slot.done());
  ASSERT_TRUE(test::run_until(io_, [&] { return slot.response.has_value(); }));
  EXPECT_EQ(slot.response->code, coap::code::content);
  ASSERT_EQ(peer_.received.size(), 1u);
  EXPECT_EQ(strings(peer_.received[0], coap::option::uri_path), std::vector<std::string>{"time"});
}

TEST(CoapUpstreamSetup, BadUrlsThrow) {
  asio::io_context io;
  RouteSpec r;
  r.prefix = "/x";
  r.upstream = "coap://";
  EXPECT_THROW(make_coap_upstream(io, r), std::runtime_error);
  // coaps needs a PSK: refused at start-up, not at the first request.
  r.upstream = "coaps://127.0.0.1:5684";
  EXPECT_THROW(make_coap_upstream(io, r), std::runtime_error);
  EXPECT_THROW(Router(io, {r}), std::runtime_error);
  r.psk_identity = std::string(300, 'i');  // beyond OpenSSL's PSK_MAX_IDENTITY_LEN
  r.psk_key = "k";
  EXPECT_THROW(make_coap_upstream(io, r), std::runtime_error);
  r.psk_identity = "gw";
  EXPECT_NO_THROW(make_coap_upstream(io, r));
  EXPECT_NO_THROW(Router(io, {r}));
}

}  // namespace
}  // namespace coapgw::upstream
