#include "session/session.hpp"

#include "session/table.hpp"

namespace coapgw::session {

std::string_view to_string(Proto p) {
  switch (p) {
    case Proto::none: return "none";
    case Proto::udp: return "udp";
    case Proto::dtls: return "dtls";
    case Proto::tcp: return "tcp";
    case Proto::tls: return "tls";
    case Proto::ws: return "ws";
    case Proto::wss: return "wss";
  }
  return "none";
}
std::string_view to_string(Type t) {
  switch (t) {
    case Type::none: return "none";
    case Type::client: return "client";
    case Type::server: return "server";
    case Type::hello: return "hello";
  }
  return "none";
}
std::string_view to_string(State s) {
  switch (s) {
    case State::none: return "none";
    case State::connecting: return "connecting";
    case State::handshake: return "handshake";
    case State::csm: return "csm";
    case State::established: return "established";
  }
  return "none";
}
std::string_view to_string(NackReason r) {
  switch (r) {
    case NackReason::too_many_retries: return "too_many_retries";
    case NackReason::not_deliverable: return "not_deliverable";
    case NackReason::rst: return "rst";
    case NackReason::tls_failed: return "tls_failed";
    case NackReason::icmp_issue: return "icmp_issue";
    case NackReason::bad_response: return "bad_response";
    case NackReason::tls_layer_failed: return "tls_layer_failed";
  }
  return "?";
}
std::string_view to_string(CloseReason r) {
  switch (r) {
    case CloseReason::idle_timeout: return "idle_timeout";
    case CloseReason::evicted: return "evicted";
    case CloseReason::peer_closed: return "peer_closed";
    case CloseReason::tls_failed: return "tls_failed";
    case CloseReason::handshake_timeout: return "handshake_timeout";
    case CloseReason::disconnected: return "disconnected";
    case CloseReason::shutdown: return "shutdown";
    case CloseReason::revoked: return "revoked";
  }
  return "?";
}
std::string_view to_string(Event e) {
  switch (e) {
    case Event::session_new: return "session_new";
    case Event::session_established: return "session_established";
    case Event::session_closed: return "session_closed";
    case Event::dtls_connected: return "dtls_connected";
    case Event::dtls_closed: return "dtls_closed";
    case Event::dtls_error: return "dtls_error";
    case Event::message_retransmitted: return "message_retransmitted";
    case Event::bad_packet: return "bad_packet";
  }
  return "?";
}

Session::Session(Table* table, std::uint64_t id, const Key& key, const Address& local, Type type,
                 TimePoint now, std::uint16_t first_message_id)
    : table_(table),
      id_(id),
      created_(now),
      last_seen_(now),
      remote_(key.remote),
      local_(local),
      key_port_(key.local_port),
      // RFC 7252 4.4: start message ids at a random value, so an off-path attacker cannot guess
      // the ids of our CONs and forge their ACK or RST.
      next_mid_(first_message_id),
      proto_(key.proto),
      type_(type),
      endpoint_(key.endpoint) {}

Session::~Session() {
  if (app_release_ != nullptr && app_data_ != nullptr) app_release_(app_data_);
}

Session& Session::reference() {
  if (refcount_++ == 0) table_->on_reference(*this);
  return *this;
}

void Session::release() {
  if (refcount_ <= 0) return;
  if (--refcount_ == 0) table_->on_release(*this);  // may free *this
}

void Session::disconnected(NackReason reason) {
  auto close_reason = (reason == NackReason::tls_failed || reason == NackReason::tls_layer_failed)
                          ? CloseReason::tls_failed
                          : CloseReason::disconnected;
  table_->close(*this, close_reason);  // may free *this
}

bool Session::set_type_client() {
  if (type_ != Type::server || closed_) return false;
  table_->on_type_change(*this, type_, Type::client);
  type_ = Type::client;
  reference();
  return true;
}

bool Session::set_type_server() {
  if (type_ != Type::client || closed_) return false;
  table_->on_type_change(*this, type_, Type::server);
  type_ = Type::server;
  release();
  return true;
}

void Session::set_app_data(void* data, AppDataRelease release) {
  if (app_release_ != nullptr && app_data_ != nullptr && app_data_ != data) app_release_(app_data_);
  app_data_ = data;
  app_release_ = release;
}

const Address* Session::addr_mcast() const {
  return (extras_ && extras_->has_mcast) ? &extras_->mcast : nullptr;
}

Context* Session::context() const { return table_->context(); }

void* Session::tls(TlsLibrary* library) const {
  auto* t = tls_state();
  void* handle = t != nullptr ? t->native_handle() : nullptr;
  if (library != nullptr) *library = handle != nullptr ? t->library() : TlsLibrary::none;
  return handle;
}

std::span<const std::byte> Session::psk_hint() const {
  auto* t = tls_state();
  if (t == nullptr || type_ != Type::server) return {};
  auto hint = t->psk_hint();
  return std::as_bytes(std::span(hint.data(), hint.size()));
}

std::span<const std::byte> Session::psk_key() const {
  auto* t = tls_state();
  return t != nullptr ? t->psk_key() : std::span<const std::byte>{};
}

bool Session::idle() const { return in_pool_; }

void Session::set_state(State state) {
  if (state == state_ || closed_) return;
  auto from = state_;
  state_ = state;
  table_->on_state_change(*this, from, state);
}

Session::Extras& Session::extras() {
  if (!extras_) {
    extras_ = std::make_unique<Extras>();
    extras_->key_remote = remote_;
  }
  return *extras_;
}

void Session::set_tls(std::unique_ptr<TlsState> tls) { tls_ = std::move(tls); }
TlsState* Session::tls_state() const { return tls_.get(); }

void Session::set_addr_mcast(const Address& group) {
  auto& e = extras();
  e.mcast = group;
  e.has_mcast = true;
  remote_ = group;
}

void Session::set_addr_remote_responder(const Address& responder) {
  extras();  // keeps the key before remote_ changes
  remote_ = responder;
}

void Session::reset_remote_to_mcast() {
  if (extras_ && extras_->has_mcast) remote_ = extras_->mcast;
}

}  // namespace coapgw::session
