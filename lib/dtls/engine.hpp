// coapgw::dtls::Engine — one DTLS 1.2 server session, datagrams in and out.
//
// Created by ServerContext::on_hello once a ClientHello carried a valid cookie.
// Owns the OpenSSL SSL object for the handshake and, through an internal
// RecordLayer, the record protection of the established session (issue 8
// swaps that piece for a lean AEAD layer and frees the SSL object). Does no
// I/O and reads no clock: the worker passes `now` and sends what lands in
// Output::datagrams. The ServerContext that created an engine must outlive it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/address.hpp"
#include "dtls/datagram_pipe.hpp"
#include "dtls/output.hpp"
#include "dtls/wire.hpp"

struct ssl_st;

namespace coapgw::dtls {

class ServerContext;
namespace detail {
class RecordLayer;
class SslRecordLayer;
struct Callbacks;
}  // namespace detail

class Engine {
 public:
  enum class State : std::uint8_t { handshake, established, closed };
  using time_point = std::chrono::steady_clock::time_point;

  // Consecutive records failing to authenticate that end an established session.
  static constexpr std::uint32_t max_consecutive_bad_records = 8;

  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void on_datagram(std::span<const std::byte> datagram, Output& out, time_point now);
  // One application_data record -> out.datagrams; false if not established or too large.
  bool send(std::span<const std::byte> plaintext, Output& out);
  // close_notify -> out.datagrams (when established); state closed.
  void close(Output& out);

  // When the worker must call on_timer next (nullopt = none).
  std::optional<time_point> next_timer() const;
  // Retransmits the last flight when due, or fails with handshake_timeout.
  void on_timer(Output& out, time_point now);

  State state() const { return state_; }
  const std::string& identity() const { return identity_; }
  std::span<const std::byte> psk_key() const;
  std::string_view psk_hint() const;
  const Address& peer() const { return peer_; }
  ssl_st* native_handle() const { return ssl_; }
  std::size_t memory_estimate() const;
  // Application records dropped because they failed to authenticate, were
  // replayed or were malformed (single bad records are dropped silently).
  std::uint64_t bad_records() const { return bad_records_; }
  Failure failure() const { return failure_; }
  // Largest plaintext send() accepts (one record fits one datagram).
  std::size_t max_plaintext() const;

 private:
  friend class ServerContext;
  friend struct detail::Callbacks;
  friend class detail::SslRecordLayer;

  Engine(ServerContext& context, ssl_st* ssl, const Address& peer, time_point now);
  void start(Output& out, time_point now);
  void drive_handshake(Output& out);
  void on_established(Output& out);
  void on_record(const wire::Record& record, Output& out);
  void fail(Failure failure, Output& out);
  void send_plaintext_alert(std::uint8_t description, Output& out);
  void note_handshake_records(std::span<const std::byte> datagram);

  ServerContext* context_;
  ssl_st* ssl_;
  std::unique_ptr<detail::RecordLayer> record_layer_;
  detail::DatagramPipe pipe_;
  Address peer_;
  std::string identity_;
  std::string psk_key_;
  time_point handshake_deadline_;
  time_point last_now_;
  std::uint64_t bad_records_ = 0;
  std::uint32_t consecutive_bad_ = 0;
  State state_ = State::handshake;
  Failure failure_ = Failure::none;
  // Handshake observations from OpenSSL's callbacks (see engine.cpp).
  bool psk_identity_unknown_ = false;
  bool peer_ccs_seen_ = false;
  bool peer_finished_seen_ = false;
  bool peer_epoch1_handshake_seen_ = false;
  bool fatal_alert_received_ = false;
};

}  // namespace coapgw::dtls
