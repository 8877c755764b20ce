#include "exchange/layer.hpp"

#include <array>

#include "session/session.hpp"

namespace coapgw::exchange {

Layer::Layer(LayerSettings settings, Sink& sink, Random random)
    : settings_(std::move(settings)),
      sink_(sink),
      random_(std::move(random)),
      cons_(settings_.transmission, random_, settings_.max_outstanding),
      client_(*this, settings_.client, random_) {}

void Layer::on_message(session::Session& s, const coap::MessageView& m, TimePoint now) {
  // Reliable mode (RFC 8323 §2): no ACK, RST or Empty message means anything on a stream.
  if (reliable(s) && (coap::is_empty(m.code) || m.type == coap::Type::ack || m.type == coap::Type::rst)) return;
  if (m.type == coap::Type::ack || m.type == coap::Type::rst) return on_ack_or_rst(s, m, now);
  if (coap::is_empty(m.code)) {
    // An Empty CON is a "CoAP ping", answered with RST; an Empty NON is not allowed.
    if (m.type == coap::Type::con) send_empty(s, coap::Type::rst, m.message_id);
    else sink_.on_anomaly(s, Anomaly::empty_non);
    return;
  }
  if (coap::is_response(m.code)) {
    if (client_.on_response_message(s, m, now)) return;
    sink_.on_anomaly(s, Anomaly::unexpected_response);
    if (m.type == coap::Type::con) send_empty(s, coap::Type::rst, m.message_id);
    return;
  }
  if (!coap::is_request(m.code)) {
    sink_.on_anomaly(s, Anomaly::reserved_code);
    if (m.type == coap::Type::con) send_empty(s, coap::Type::rst, m.message_id);
    return;
  }
  on_request(s, m, now);
}

void Layer::on_ack_or_rst(session::Session& s, const coap::MessageView& m, TimePoint now) {
  const auto* e = cons_.find(s, m.message_id);
  if (e == nullptr) return;  // late or stray: ignored (RFC 7252 §4.2)
  if (e->tag != 0) return client_.on_ack_or_rst(s, m, e->tag, now);
  if (m.type == coap::Type::ack && !coap::is_empty(m.code)) {
    // Our server-role CONs are answers: the peer's ACK is Empty (RFC 7252 §5.2.3). Anything else
    // does not acknowledge it and must not stop its retransmission.
    sink_.on_anomaly(s, Anomaly::unexpected_ack);
    return;
  }
  ended(*cons_.take(s, m.message_id), m.type == coap::Type::rst ? Ending::reset : Ending::acked);
}

void Layer::on_request(session::Session& s, const coap::MessageView& m, TimePoint now) {
  ExchangeCache* cache = sink_.dedup_cache(s);
  if (cache != nullptr && reliable(s)) {
    sink_.on_request(s, m, now);  // the stream delivers each request once: nothing to deduplicate
    return;
  }
  if (cache == nullptr) {
    if (m.type == coap::Type::con) send_empty(s, coap::Type::rst, m.message_id);
    return;
  }
  const auto token_fp = ExchangeCache::fingerprint(m.token);
  const auto* e = cache->find(s.id(), m.message_id, now);
  if (e != nullptr && e->token_fp != token_fp) {
    // Same message id, another token: a new exchange (RFC 7252 §4.5 duplicates repeat the token).
    sink_.on_anomaly(s, Anomaly::message_id_reused);
    e = nullptr;
  }
  if (e != nullptr) {
    sink_.on_duplicate(s);
    // The same answer again for a CON (piggybacked answer, or the Empty ACK of a separate one); a
    // duplicate NON, or a CON still being worked on before any ACK went out, is not processed again.
    if (m.type == coap::Type::con && e->answered && e->length != 0) {
      auto answer = e->response();
      std::vector<std::byte> copy(answer.begin(), answer.end());  // sending may touch the cache
      sink_.send(s, copy);
    }
    return;
  }
  cache->insert(s.id(), m.message_id, now, token_fp);
  sink_.on_request(s, m, now);
}

void Layer::send_empty(session::Session& s, coap::Type type, std::uint16_t mid) {
  if (reliable(s)) return;  // no ACK or RST on a stream
  std::array<std::byte, 4> buf{};
  coap::MessageWriter w(buf);
  w.header(type, coap::code::empty, mid, {});
  sink_.send(s, w.bytes());
}

void Layer::answer(session::Session& s, std::uint16_t request_mid, std::span<const std::byte> token,
                   std::span<const std::byte> message) {
  if (reliable(s)) {
    // The Empty ACK of a separate answer means nothing on a stream; an answer is never repeated.
    if (message.size() > 1 && !coap::is_empty(std::to_integer<std::uint8_t>(message[1]))) sink_.send(s, message);
    return;
  }
  if (auto* cache = sink_.dedup_cache(s)) {
    cache->set_response(s.id(), request_mid, message, ExchangeCache::fingerprint(token));
  }
  sink_.send(s, message);
}

bool Layer::send_con(session::Session& s, std::span<const std::byte> message, std::uint16_t mid, TimePoint now) {
  sink_.send(s, message);
  if (reliable(s)) return true;  // the stream delivers it or the connection ends: never retransmitted
  std::optional<Retransmitter::Entry> replaced;
  if (!cons_.track(s, mid, std::vector<std::byte>(message.begin(), message.end()), 0, now, replaced)) {
    sink_.on_anomaly(s, Anomaly::outstanding_full);
    return false;
  }
  s.reference();
  // The 16-bit message id wrapped while an older CON with the same id was still unacknowledged.
  if (replaced) ended(std::move(*replaced), Ending::replaced);
  return true;
}

SendResult Layer::transmit(session::Session& s, std::uint16_t mid, std::vector<std::byte> message,
                           std::optional<Token> tag, TimePoint now) {
  if (sink_.send(s, message) == SendResult::refused) return SendResult::refused;
  if (!tag || reliable(s)) return SendResult::sent;  // a stream needs no retransmission; the deadline still holds
  std::optional<Retransmitter::Entry> replaced;
  // Not tracked when the table is full: the request's deadline still ends it.
  cons_.track(s, mid, std::move(message), *tag, now, replaced);
  if (replaced) {
    if (replaced->tag != 0) client_.fail_token(replaced->tag, Failure::timeout);
    else ended(std::move(*replaced), Ending::replaced);
  }
  return SendResult::sent;
}

bool Layer::reliable(const session::Session& s) { return session::is_reliable(s.proto()); }

void Layer::ended(Retransmitter::Entry entry, Ending how) {
  session::Session& s = *entry.session;
  sink_.on_con_ended(s, entry.message_id, how);
  s.release();  // a closed or client session may be freed here
}

void Layer::on_timer(TimePoint now) {
  auto due = cons_.on_timer(now);
  for (auto key : due.resend) {
    const auto* e = cons_.find(key);
    if (e == nullptr) continue;  // ended by an earlier step of this loop
    const auto tag = e->tag;
    if (sink_.send(*e->session, e->message) == SendResult::refused && tag != 0) {
      client_.fail_token(tag, Failure::unreachable);
    }
  }
  for (auto& e : due.gave_up) {
    if (e.tag != 0) client_.fail_token(e.tag, Failure::timeout);
    else ended(std::move(e), Ending::gave_up);
  }
  client_.on_timer(now);
}

std::optional<TimePoint> Layer::next_deadline() const {
  auto a = cons_.next_deadline();
  auto b = client_.next_deadline();
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

void Layer::drop_session(session::Session& s) {
  for (auto& e : cons_.take_session(s)) {
    if (e.tag == 0) ended(std::move(e), Ending::dropped);
  }
  client_.fail(s, ClientExchanges::Which::all, Failure::closed);
}

}  // namespace coapgw::exchange
