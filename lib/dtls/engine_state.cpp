// Engine's saved state (issue 8: export for sessions.persist, import at start-up) and its RFC 9146
// Connection IDs, apart from the datagram paths in engine.cpp.
#include <openssl/crypto.h>

#include <algorithm>

#include "dtls/engine.hpp"
#include "dtls/handshake_state.hpp"
#include "dtls/record_crypto.hpp"
#include "dtls/record_layer.hpp"
#include "dtls/context.hpp"
#include "dtls/server_context.hpp"

namespace coapgw::dtls {

std::span<const std::byte> Engine::connection_id() const {
  if (record_layer_) return record_layer_->read_cid();
  if (handshake_ && handshake_->cid.negotiated) return handshake_->cid.read;
  return {};
}

std::span<const std::byte> Engine::peer_connection_id() const {
  if (record_layer_) return record_layer_->write_cid();
  if (handshake_ && handshake_->cid.negotiated) return handshake_->cid.write;
  return {};
}

std::optional<SessionState> Engine::export_state() const {
  // Saved sessions are device sessions: the state names the keys by the server's view.
  if (state_ != State::established || !lean() || context_->role() != Context::Role::server) return std::nullopt;
  SessionState state;
  if (!record_layer_->export_state(&state)) return std::nullopt;
  state.peer = peer_;
  state.identity = identity_;
  const auto key = psk_key();
  state.psk_key.assign(key.begin(), key.end());
  state.psk_hint = psk_hint_;
  if (peer_certs_) state.peer_certs = *peer_certs_;
  return state;
}

std::unique_ptr<Engine> Engine::import_state(ServerContext& context, const SessionState& state,
                                             std::uint64_t write_seq_gap) {
  const auto* suite = detail::find_suite(state.cipher_suite);
  if (suite == nullptr || context.crypto_ == nullptr || state.client_write_key.size() != suite->key_size ||
      state.server_write_key.size() != suite->key_size || state.client_write_iv.size() != suite->fixed_iv_size ||
      state.server_write_iv.size() != suite->fixed_iv_size || state.read_epoch == 0 || state.write_epoch == 0 ||
      state.write_sequence >= detail::write_sequence_limit ||
      write_seq_gap >= detail::write_sequence_limit - state.write_sequence ||
      state.replay_max > detail::max_write_sequence) {
    return nullptr;
  }
  detail::LeanStart start;
  start.suite = suite;
  std::copy(state.client_write_key.begin(), state.client_write_key.end(), start.read.key.begin());
  std::copy(state.server_write_key.begin(), state.server_write_key.end(), start.write.key.begin());
  std::copy(state.client_write_iv.begin(), state.client_write_iv.end(), start.read.iv.begin());
  std::copy(state.server_write_iv.begin(), state.server_write_iv.end(), start.write.iv.begin());
  start.read_epoch = state.read_epoch;
  start.write_epoch = state.write_epoch;
  start.write_sequence = state.write_sequence + write_seq_gap;
  start.window.restore(state.replay_any, state.replay_max, state.replay_bits);
  start.read_cid = state.local_cid;
  start.write_cid = state.peer_cid;
  std::unique_ptr<Engine> engine(new Engine(context, state.peer));
  engine->generation_ = context.credentials_generation();
  engine->record_layer_ = detail::make_lean_record_layer(*context.crypto_, start);
  start.wipe_keys();
  if (!engine->record_layer_) return nullptr;
  engine->identity_ = state.identity;
  engine->psk_key_.assign(reinterpret_cast<const char*>(state.psk_key.data()), state.psk_key.size());
  engine->psk_hint_ = state.psk_hint;
  if (!state.peer_certs.empty())
    engine->peer_certs_ = std::make_unique<std::vector<std::vector<std::byte>>>(state.peer_certs);
  engine->state_ = State::established;
  return engine;
}

}  // namespace coapgw::dtls
