#include "exchange/client.hpp"

#include <algorithm>

#include "coap/block.hpp"
#include "coap/option.hpp"
#include "exchange/layer.hpp"
#include "session/session.hpp"

namespace coapgw::exchange {

// One request, from its first message to its last answer; spans several CONs when Block1 or Block2
// is in play (each block its own message id, under the same token).
struct ClientExchanges::Exchange {
  session::Session* session = nullptr;
  Token token = 0;
  std::array<std::byte, 8> token_bytes{};
  Handler handler;
  Request request;
  bool parked = false;

  bool block1 = false;           // the payload goes block-wise
  std::uint32_t block1_num = 0;  // block being sent
  std::uint8_t block1_szx = 6;
  bool block1_done = false;

  bool block2_asking = false;  // the message in flight asks for block block2_next of the answer
  std::uint32_t block2_next = 0;
  std::uint8_t block2_szx = 6;
  std::optional<Response> partial;                    // the first Block2 block's options, body so far
  std::optional<std::vector<std::byte>> block2_etag;  // the first block's ETag: later ones must match
  unsigned block2_restarts = 0;

  std::uint16_t mid = 0;  // of the message in flight
  bool awaiting_ack = false;

  std::span<const std::byte> token_span() const { return token_bytes; }
};

namespace {

void add_block(coap::Message& m, std::uint16_t number, const coap::BlockValue& b) {
  std::array<std::byte, 3> buf{};
  auto len = coap::encode_block(b, buf);
  m.add_option(number, std::span<const std::byte>(buf.data(), len));
}

Response to_response(const coap::MessageView& m) {
  Response r;
  r.code = m.code;
  for (auto& o : m.option_list()) r.options.push_back(coap::Option{o.number, {o.value.begin(), o.value.end()}});
  r.payload.assign(m.payload.begin(), m.payload.end());
  return r;
}

Token decode_token(std::span<const std::byte> t) {
  Token v = 0;
  for (std::size_t i = 0; i < t.size(); ++i) v |= Token{std::to_integer<std::uint8_t>(t[i])} << (8 * i);
  return v;
}

}  // namespace

const coap::Option* Response::find(std::uint16_t number) const {
  for (auto& o : options) {
    if (o.number == number) return &o;
  }
  return nullptr;
}

ClientExchanges::ClientExchanges(Layer& layer, const ClientSettings& settings, const Random& random)
    : layer_(layer), settings_(settings), random_(random) {}

ClientExchanges::~ClientExchanges() = default;

std::size_t ClientExchanges::parked() const { return parked_.size(); }

std::optional<Token> ClientExchanges::start(session::Session& s, Request request, Handler handler, TimePoint now,
                                            bool park) {
  if (exchanges_.size() >= settings_.max_exchanges) return std::nullopt;
  auto ex = std::make_unique<Exchange>();
  do {
    ex->token = random_();
  } while (ex->token == 0 || exchanges_.contains(ex->token));  // 0 tags server-role CONs
  for (std::size_t i = 0; i < 8; ++i) ex->token_bytes[i] = static_cast<std::byte>(ex->token >> (8 * i));
  ex->session = &s.reference();  // pending traffic holds the session
  ex->handler = std::move(handler);
  ex->request = std::move(request);
  ex->block1 = ex->request.payload.size() > settings_.block_size;
  ex->block1_szx = coap::szx_for_size(settings_.block_size);
  ex->block2_szx = ex->block1_szx;
  ex->parked = park;
  const Token token = ex->token;
  auto& ref = *ex;
  exchanges_.emplace(token, std::move(ex));
  if (park) {
    parked_.push_back(token);
  } else {
    send_next(ref, now);
  }
  return token;
}

void ClientExchanges::send_parked(session::Session& s, TimePoint now) {
  std::deque<Token> keep;
  std::vector<Token> go;
  for (auto t : parked_) {
    auto it = exchanges_.find(t);
    if (it == exchanges_.end()) continue;
    if (it->second->session == &s) go.push_back(t);
    else keep.push_back(t);
  }
  parked_ = std::move(keep);
  for (auto t : go) {
    auto it = exchanges_.find(t);  // an earlier send may have ended it
    if (it == exchanges_.end()) continue;
    it->second->parked = false;
    send_next(*it->second, now);
  }
}

void ClientExchanges::fail(session::Session& s, Which which, Failure failure) {
  std::vector<Token> tokens;
  for (auto& [t, ex] : exchanges_) {
    if (ex->session != &s) continue;
    if (which == Which::parked && !ex->parked) continue;
    if (which == Which::awaiting_ack && !ex->awaiting_ack) continue;
    tokens.push_back(t);
  }
  for (auto t : tokens) fail_token(t, failure);
}

void ClientExchanges::fail_token(Token token, Failure failure) {
  Result r;
  r.failure = failure;
  finish(token, std::move(r));
}

void ClientExchanges::cancel(Token token) { finish(token, std::nullopt); }

// Builds and sends the next message of the exchange: the next Block1 block, the next Block2
// request, or the whole request.
void ClientExchanges::send_next(Exchange& ex, TimePoint now) {
  session::Session& s = *ex.session;
  const auto& req = ex.request;
  coap::Message m;
  m.type = req.type;
  m.code = req.code;
  m.message_id = s.next_message_id();
  m.token.assign(ex.token_bytes.begin(), ex.token_bytes.end());
  m.options = req.options;
  if (ex.block2_asking) {
    // RFC 7959 §2.4: later blocks of the answer are asked for with Block2 and no payload (a FETCH
    // repeats its body, which selects what is answered: RFC 8132 §2.3.2).
    add_block(m, coap::option::block2, coap::BlockValue{ex.block2_next, false, ex.block2_szx});
    if (req.code == coap::code::fetch) m.payload = req.payload;
  } else if (ex.block1) {
    const std::size_t size = std::size_t{16} << ex.block1_szx;
    const std::size_t offset = std::size_t{ex.block1_num} * size;
    const std::size_t n = std::min(size, req.payload.size() - offset);
    const bool more = offset + n < req.payload.size();
    add_block(m, coap::option::block1, coap::BlockValue{ex.block1_num, more, ex.block1_szx});
    if (ex.block1_num == 0) m.add_uint_option(coap::option::size1, static_cast<std::uint32_t>(req.payload.size()));
    m.payload.assign(req.payload.begin() + static_cast<std::ptrdiff_t>(offset),
                     req.payload.begin() + static_cast<std::ptrdiff_t>(offset + n));
  } else {
    m.payload = req.payload;
  }
  auto bytes = coap::serialize(m);
  if (bytes.empty()) return fail_token(ex.token, Failure::unencodable);
  stop_awaiting(ex);
  const bool con = m.type == coap::Type::con;
  ex.mid = m.message_id;
  ex.awaiting_ack = con;
  const auto token = ex.token;
  if (layer_.transmit(s, m.message_id, std::move(bytes), con ? std::optional<Token>(token) : std::nullopt, now) ==
      SendResult::refused) {
    fail_token(token, Failure::unreachable);
  }
}

void ClientExchanges::stop_awaiting(Exchange& ex) {
  if (!ex.awaiting_ack) return;
  ex.awaiting_ack = false;
  layer_.forget_con(*ex.session, ex.mid);
}

void ClientExchanges::on_ack_or_rst(session::Session& s, const coap::MessageView& m, Token token, TimePoint now) {
  auto it = exchanges_.find(token);
  if (it == exchanges_.end() || it->second->session != &s) {
    layer_.forget_con(s, m.message_id);
    return;
  }
  Exchange& ex = *it->second;
  if (m.type == coap::Type::rst) return fail_token(token, Failure::reset);
  if (coap::is_empty(m.code)) return stop_awaiting(ex);  // a separate answer follows
  if (!std::ranges::equal(m.token, ex.token_span())) return;  // not the answer to this CON
  stop_awaiting(ex);
  on_response(ex, m, now);
}

// A late separate answer to an earlier block of this exchange (same token, already handled).
static bool is_stale(const Response* partial, bool block1_pending, std::size_t block1_in_flight_start,
                     const coap::MessageView& m) {
  if (partial) {
    if (auto* o = m.find(coap::option::block2)) {
      auto b = coap::decode_block(o->value);
      if (b && std::size_t{b->num} * b->size() < partial->payload.size()) return true;
    }
  }
  if (block1_pending && m.code == coap::code::continue_) {
    if (auto* o = m.find(coap::option::block1)) {
      // Stale when what it acknowledges ends before the block now in flight starts.
      auto b = coap::decode_block(o->value);
      if (b && b->size() * (std::size_t{b->num} + 1) <= block1_in_flight_start) return true;
    }
  }
  return false;
}

bool ClientExchanges::on_response_message(session::Session& s, const coap::MessageView& m, TimePoint now) {
  if (m.token.size() != 8) return false;
  const auto mid_key = Retransmitter::key_of(s.id(), m.message_id);
  if (m.type == coap::Type::con && std::ranges::find(acked_, mid_key) != acked_.end()) {
    // A retransmission of an answer already handled (our ACK was lost): ACK again, act once.
    layer_.send_empty(s, coap::Type::ack, m.message_id);
    return true;
  }
  auto it = exchanges_.find(decode_token(m.token));
  if (it == exchanges_.end() || it->second->session != &s || it->second->parked) return false;
  Exchange& ex = *it->second;
  if (m.type == coap::Type::con) {
    layer_.send_empty(s, coap::Type::ack, m.message_id);
    acked_.push_back(mid_key);
    if (acked_.size() > acked_memory) acked_.pop_front();
  }
  const std::size_t in_flight_start = (std::size_t{16} << ex.block1_szx) * ex.block1_num;
  if (is_stale(ex.partial ? &*ex.partial : nullptr, ex.block1 && !ex.block1_done, in_flight_start, m)) return true;
  // A separate answer also acknowledges our CON if its Empty ACK was lost (RFC 7252 §5.2.2).
  stop_awaiting(ex);
  on_response(ex, m, now);
  return true;
}

void ClientExchanges::on_response(Exchange& ex, const coap::MessageView& m, TimePoint now) {
  // Block1 in progress: 2.31 Continue asks for the next block.
  if (ex.block1 && !ex.block1_done) {
    const std::size_t size = std::size_t{16} << ex.block1_szx;
    const std::size_t sent = (std::size_t{ex.block1_num} + 1) * size;
    if (m.code == coap::code::continue_ && sent < ex.request.payload.size()) {
      std::uint8_t szx = ex.block1_szx;
      if (auto* b1 = m.find(coap::option::block1)) {
        if (auto v = coap::decode_block(b1->value); v && v->szx < szx) szx = v->szx;  // the server asks smaller
      }
      ex.block1_szx = szx;
      ex.block1_num = static_cast<std::uint32_t>(sent / (std::size_t{16} << szx));
      return send_next(ex, now);
    }
    ex.block1_done = true;
  }
  // Block2: every block of the answer is collected before the handler sees it.
  std::optional<coap::BlockValue> b2;
  if (auto* o = m.find(coap::option::block2)) {
    b2 = coap::decode_block(o->value);
    if (!b2) return fail_token(ex.token, Failure::bad_response);
  }
  if (b2 && (b2->more || ex.partial)) return on_block2(ex, m, *b2, now);
  deliver(ex, to_response(m));
}

// One block of a Block2 answer (RFC 7959 §2.4). Blocks are placed by byte offset, so a server that
// answers in a smaller block size than asked (or changes to one) is followed; an ETag that differs
// from the first block's means the representation changed meanwhile, and the fetch starts again
// from block 0 (a bounded number of times).
void ClientExchanges::on_block2(Exchange& ex, const coap::MessageView& m, const coap::BlockValue& b2, TimePoint now) {
  const std::size_t offset = std::size_t{b2.num} * b2.size();
  std::optional<std::vector<std::byte>> etag;
  if (auto* e = m.find(coap::option::etag)) etag.emplace(e->value.begin(), e->value.end());
  // A block without an ETag says nothing about the version (RFC 7959 §2.4: SHOULD, not MUST).
  const bool changed = etag && etag != ex.block2_etag;
  if (ex.partial && (m.code != ex.partial->code || changed)) {
    if (ex.block2_restarts >= max_block2_restarts) return fail_token(ex.token, Failure::bad_response);
    ++ex.block2_restarts;
    ex.partial.reset();
    ex.block2_next = 0;
    if (b2.num != 0) return ask_block2(ex, 0, ex.block2_szx, now);
  }
  const std::size_t have = ex.partial ? ex.partial->payload.size() : 0;
  // RFC 7959 §2.2: every block but the last carries exactly its size.
  if (offset != have || (b2.more && m.payload.size() != b2.size())) return fail_token(ex.token, Failure::bad_response);
  if (auto* size2 = m.find(coap::option::size2); size2 && coap::decode_uint(size2->value) > settings_.max_body_bytes) {
    return fail_token(ex.token, Failure::bad_response);
  }
  if (have + m.payload.size() > settings_.max_body_bytes) return fail_token(ex.token, Failure::bad_response);
  if (!ex.partial) {
    ex.partial = to_response(m);
    ex.block2_etag = std::move(etag);
  } else {
    ex.partial->payload.insert(ex.partial->payload.end(), m.payload.begin(), m.payload.end());
  }
  if (!b2.more) {
    auto whole = std::move(*ex.partial);
    ex.partial.reset();
    return deliver(ex, std::move(whole));
  }
  const std::uint8_t szx = std::min(ex.block2_szx, b2.szx);  // a smaller size, once offered, is kept
  ask_block2(ex, static_cast<std::uint32_t>(ex.partial->payload.size() / (std::size_t{16} << szx)), szx, now);
}

void ClientExchanges::ask_block2(Exchange& ex, std::uint32_t num, std::uint8_t szx, TimePoint now) {
  if (num > coap::max_block_num) return fail_token(ex.token, Failure::bad_response);
  ex.block2_szx = szx;
  ex.block2_next = num;
  ex.block2_asking = true;
  send_next(ex, now);
}

void ClientExchanges::deliver(Exchange& ex, Response response) {
  if (!ex.request.multi) {
    Result r;
    r.response = std::move(response);
    return finish(ex.token, std::move(r));
  }
  // A multi registration stays: later answers under its token come to the same handler.
  ex.request.deadline.reset();
  ex.block2_asking = false;
  ex.block2_restarts = 0;
  ex.block2_etag.reset();
  Result r;
  r.response = std::move(response);
  auto handler = ex.handler;  // the handler may cancel the registration
  handler(std::move(r));
}

void ClientExchanges::finish(Token token, std::optional<Result> result) {
  auto it = exchanges_.find(token);
  if (it == exchanges_.end()) return;
  auto ex = std::move(it->second);
  exchanges_.erase(it);
  if (ex->parked) std::erase(parked_, token);
  stop_awaiting(*ex);
  if (result) ex->handler(std::move(*result));
  ex->session->release();  // a client session may be freed here
}

void ClientExchanges::on_timer(TimePoint now) {
  std::vector<Token> late;
  for (auto& [t, ex] : exchanges_) {
    if (ex->request.deadline && *ex->request.deadline <= now) late.push_back(t);
  }
  for (auto t : late) fail_token(t, Failure::timeout);
}

std::optional<TimePoint> ClientExchanges::next_deadline() const {
  std::optional<TimePoint> next;
  for (auto& [t, ex] : exchanges_) {
    if (ex->request.deadline && (!next || *ex->request.deadline < *next)) next = ex->request.deadline;
  }
  return next;
}

}  // namespace coapgw::exchange
