// coapgw::exchange — the CoAP message layer (RFC 7252 §4-5, RFC 7959 client side), pure: it owns the
// exchanges of every session of one owner (a worker's device sessions, an upstream's client
// session), in either role, and does no I/O and reads no clock. The owner passes each parsed
// message in with `now`, calls on_timer(now) by next_deadline(), and is the Sink that sends bytes
// and hears about requests, ended CONs and anomalies. Randomness (timeouts, tokens) is injected.
//
// The stack, one RFC concern per piece: Retransmitter (reliability of our CONs, §4.2), ExchangeCache
// (deduplication of incoming CON/NON for the server role, §4.5), ClientExchanges (the client role:
// tokens, separate answers, Block1/Block2, multi-answer registrations). This class dispatches an
// incoming message to them and gives the RFC answer to what fits none (RST for an unexpected CON).
// All tables are per owner, keyed by session: a session carries no message-layer state itself.
// On a reliable session (RFC 8323: CoAP over TCP, TLS, WebSockets) the layer is in reliable mode:
// no deduplication, no ACK/RST/Empty messages, no retransmission; requests, answers and the client
// role (tokens, Block-wise, deadlines) work as on UDP.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "coap/message.hpp"
#include "exchange/client.hpp"
#include "exchange/exchange_cache.hpp"
#include "exchange/retransmitter.hpp"
#include "exchange/transmission.hpp"

namespace coapgw::exchange {

enum class SendResult : std::uint8_t { sent, refused };  // refused: the transport says the peer is gone

// How a server-role CON of ours (a separate answer) ended.
enum class Ending : std::uint8_t { acked, reset, gave_up, replaced, dropped };

// Incoming messages the layer refuses or ignores, for the owner's metrics.
enum class Anomaly : std::uint8_t {
  empty_non,            // an Empty NON (not allowed, RFC 7252 §4.3)
  unexpected_response,  // a response no request of ours waits for (RST if CON)
  reserved_code,        // code class 1, 6 or 7 (RST if CON)
  unexpected_ack,       // a non-empty ACK for a server-role CON (the CON stays)
  message_id_reused,    // a known message id with another token: a new exchange
  outstanding_full,     // a server-role CON sent once, not retransmitted
};

class Sink {
 public:
  virtual ~Sink() = default;
  // One CoAP message to the peer of `s`. Must not call back into the layer synchronously.
  virtual SendResult send(session::Session& s, std::span<const std::byte> message) = 0;
  // Server role: the cache requests on `s` are deduplicated against; nullptr: `s` serves no requests.
  virtual ExchangeCache* dedup_cache(session::Session& /*s*/) { return nullptr; }
  // A request seen for the first time (already recorded in the dedup cache).
  virtual void on_request(session::Session& /*s*/, const coap::MessageView& /*m*/, TimePoint /*now*/) {}
  virtual void on_duplicate(session::Session& /*s*/) {}
  // A server-role CON sent with send_con() ended; `s` is still referenced during the call.
  virtual void on_con_ended(session::Session& /*s*/, std::uint16_t /*mid*/, Ending /*how*/) {}
  virtual void on_anomaly(session::Session& /*s*/, Anomaly /*what*/) {}
};

struct LayerSettings {
  TransmissionParameters transmission;
  std::size_t max_outstanding = 10000;  // CONs awaiting their ACK, per owner
  ClientSettings client;
};

class Layer {
 public:
  Layer(LayerSettings settings, Sink& sink, Random random);
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  void on_message(session::Session& s, const coap::MessageView& m, TimePoint now);
  void on_timer(TimePoint now);
  std::optional<TimePoint> next_deadline() const;
  // disconnected(): the session's CONs end `dropped`, its requests fail with Failure::closed.
  void drop_session(session::Session& s);

  // Server role.
  void send_empty(session::Session& s, coap::Type type, std::uint16_t mid);
  // An answer to the request (request_mid, token) of `s`: recorded for its duplicates, then sent.
  void answer(session::Session& s, std::uint16_t request_mid, std::span<const std::byte> token,
              std::span<const std::byte> message);
  // A CON of ours (a separate answer): sent, then retransmitted until ACKed, RST or given up, holding
  // a reference on `s` meanwhile; Sink::on_con_ended tells. false: the table was full (sent once).
  bool send_con(session::Session& s, std::span<const std::byte> message, std::uint16_t mid, TimePoint now);

  // Client role.
  ClientExchanges& client() { return client_; }
  const ClientExchanges& client() const { return client_; }

  // For ClientExchanges: sends a message; a CON (`tag` set) is retransmitted until forget_con().
  SendResult transmit(session::Session& s, std::uint16_t mid, std::vector<std::byte> message,
                      std::optional<Token> tag, TimePoint now);
  void forget_con(session::Session& s, std::uint16_t mid) { cons_.take(s, mid); }
  Sink& sink() { return sink_; }

  const TransmissionParameters& transmission() const { return settings_.transmission; }
  std::uint64_t retransmissions() const { return cons_.retransmissions(); }
  std::size_t outstanding() const { return cons_.size(); }

 private:
  void on_ack_or_rst(session::Session& s, const coap::MessageView& m, TimePoint now);
  void on_request(session::Session& s, const coap::MessageView& m, TimePoint now);
  void ended(Retransmitter::Entry entry, Ending how);
  // Reliable mode, keyed by the session's proto (tcp, tls, ws, wss): RFC 8323 streams carry no
  // message ids, ACKs or RSTs, so requests are not deduplicated and nothing is retransmitted.
  static bool reliable(const session::Session& s);

  LayerSettings settings_;
  Sink& sink_;
  Random random_;
  Retransmitter cons_;
  ClientExchanges client_;
};

}  // namespace coapgw::exchange
