// coapgw::exchange::ClientExchanges — the client role of the message layer (RFC 7252 §5.3, RFC 7959):
// requests we send on any session, matched to their answers by token. Each request gets a fresh
// 8-byte random token (unique within the owner) and, per message, the session's next message id;
// piggybacked answers, an empty ACK followed by a separate CON/NON answer (which is ACKed, and ACKed
// again when it is retransmitted), and RSTs end it. Payloads above block_size go out with Block1,
// Block2 answers are fetched whole (bounded by max_body_bytes and max_block2_restarts) before the
// handler sees them. A request may be parked (registered, not sent: e.g. while a DTLS handshake runs)
// and have a deadline. `multi` keeps the token registered after an answer, so that one registration
// can receive several (the hook Observe, RFC 7641, builds on).
//
// One table per owner, keyed by token: a session without requests in flight costs nothing. Each
// request holds a reference on its session until it ends. Sending and CON retransmission go
// through the Layer; the handler runs synchronously, last, and may start or cancel requests.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "coap/block.hpp"
#include "coap/message.hpp"
#include "exchange/transmission.hpp"

namespace coapgw::session {
class Session;
}

namespace coapgw::exchange {

class Layer;

struct Request {
  coap::Type type = coap::Type::con;  // con or non
  std::uint8_t code = coap::code::get;
  std::vector<coap::Option> options;  // Uri-*, Content-Format, ...; not Block1/Block2/Size1
  std::vector<std::byte> payload;
  std::optional<TimePoint> deadline;  // no (first) answer by then: Failure::timeout
  bool multi = false;                 // stays registered after an answer, until cancel()
};

struct Response {
  std::uint8_t code = 0;
  std::vector<coap::Option> options;  // of the (first block of the) answer
  std::vector<std::byte> payload;     // whole: Block2 blocks joined
  const coap::Option* find(std::uint16_t number) const;
};

enum class Failure : std::uint8_t {
  timeout,       // retransmissions exhausted or the deadline passed
  reset,         // the peer answered RST
  bad_response,  // a Block2 answer out of order, over the bound, or changing too often
  unreachable,   // the transport refused the message (e.g. ICMP port unreachable)
  closed,        // the owner ended it (connection lost, shutdown)
  unencodable,   // the request cannot be serialized
};

struct Result {
  std::optional<Failure> failure;  // unset: `response` holds the answer
  Response response;
};
using Handler = std::function<void(Result)>;
using Token = std::uint64_t;

struct ClientSettings {
  std::size_t block_size = 1024;             // Block1 size and the Block2 size asked for
  std::size_t max_body_bytes = 1024 * 1024;  // Block2 answers beyond it: Failure::bad_response
  std::size_t max_exchanges = 1024;          // requests in flight per owner; beyond, start() refuses
};

// Times a Block2 fetch starts again from block 0 because the representation changed under it
// (RFC 7959 §2.4); beyond, Failure::bad_response.
inline constexpr unsigned max_block2_restarts = 3;
// Separate CON answers recently ACKed, so a retransmitted one (our ACK was lost) is ACKed again.
inline constexpr std::size_t acked_memory = 64;

class ClientExchanges {
 public:
  ClientExchanges(Layer& layer, const ClientSettings& settings, const Random& random);
  ~ClientExchanges();

  // nullopt: max_exchanges reached (nothing sent, the handler is not called).
  std::optional<Token> start(session::Session& s, Request request, Handler handler, TimePoint now, bool park);
  // Sends the parked requests of `s`, in the order they were started.
  void send_parked(session::Session& s, TimePoint now);
  enum class Which : std::uint8_t { all, parked, awaiting_ack };
  void fail(session::Session& s, Which which, Failure failure);
  // Ends a request without calling its handler (a multi registration the application is done with).
  void cancel(Token token);

  // From the Layer: an ACK or RST for one of our CONs (tag = token); a CON/NON response.
  void on_ack_or_rst(session::Session& s, const coap::MessageView& m, Token token, TimePoint now);
  bool on_response_message(session::Session& s, const coap::MessageView& m, TimePoint now);  // false: no match
  void fail_token(Token token, Failure failure);
  void on_timer(TimePoint now);
  std::optional<TimePoint> next_deadline() const;

  std::size_t size() const { return exchanges_.size(); }
  std::size_t parked() const;

 private:
  struct Exchange;
  void send_next(Exchange& ex, TimePoint now);
  void on_response(Exchange& ex, const coap::MessageView& m, TimePoint now);
  void on_block2(Exchange& ex, const coap::MessageView& m, const coap::BlockValue& b2, TimePoint now);
  void ask_block2(Exchange& ex, std::uint32_t num, std::uint8_t szx, TimePoint now);
  void deliver(Exchange& ex, Response response);
  void stop_awaiting(Exchange& ex);
  void finish(Token token, std::optional<Result> result);  // nullopt: the handler is not called

  Layer& layer_;
  const ClientSettings& settings_;
  const Random& random_;
  std::unordered_map<Token, std::unique_ptr<Exchange>> exchanges_;
  std::deque<Token> parked_;           // in start order
  std::deque<std::uint64_t> acked_;    // Retransmitter::key_of(session, mid) of ACKed separate answers
};

}  // namespace coapgw::exchange
