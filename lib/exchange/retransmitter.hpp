// coapgw::exchange::Retransmitter — RFC 7252 §4.2 reliability for the CONs one owner (a worker, an
// upstream) has sent, in either role: keyed by (session id, message id) in one table per owner, so
// a session without CONs in flight costs nothing here. It keeps each CON's bytes and schedule
// (initial timeout drawn between ACK_TIMEOUT and ACK_TIMEOUT * ACK_RANDOM_FACTOR, doubled on each
// retransmission, given up after MAX_RETRANSMIT retransmissions and one more timeout); it sends
// nothing and reads no clock: the Layer passes `now` in and sends what on_timer() says is due.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "exchange/transmission.hpp"

namespace coapgw::session {
class Session;
}

namespace coapgw::exchange {

class Retransmitter {
 public:
  struct Entry {
    session::Session* session = nullptr;
    std::vector<std::byte> message;  // the CoAP bytes (plaintext for DTLS sessions)
    std::uint64_t tag = 0;           // the client exchange's token; 0 for a server-role CON
    TimePoint deadline{};
    std::chrono::milliseconds timeout{0};
    unsigned transmissions = 1;
    std::uint16_t message_id = 0;
  };
  struct Due {
    std::vector<std::uint64_t> resend;  // keys, already rescheduled: send their message again
    std::vector<Entry> gave_up;         // removed
  };

  Retransmitter(const TransmissionParameters& parameters, const Random& random, std::size_t max_entries)
      : parameters_(parameters), random_(random), max_entries_(max_entries) {}

  static std::uint64_t key_of(std::uint64_t session_id, std::uint16_t mid) { return session_id << 16 | mid; }

  // Tracks a CON just sent once. false: the table is full and it will not be retransmitted. A CON
  // still tracked under the same session and message id (the 16-bit id wrapped) is given up and
  // handed back in `replaced`.
  bool track(session::Session& s, std::uint16_t mid, std::vector<std::byte> message, std::uint64_t tag,
             TimePoint now, std::optional<Entry>& replaced);
  const Entry* find(std::uint64_t key) const;
  const Entry* find(const session::Session& s, std::uint16_t mid) const;
  std::optional<Entry> take(const session::Session& s, std::uint16_t mid);
  Due on_timer(TimePoint now);
  std::optional<TimePoint> next_deadline() const;
  std::vector<Entry> take_session(const session::Session& s);

  std::size_t size() const { return entries_.size(); }
  std::uint64_t retransmissions() const { return retransmissions_; }

 private:
  const TransmissionParameters& parameters_;
  const Random& random_;
  std::size_t max_entries_;
  std::unordered_map<std::uint64_t, Entry> entries_;
  std::uint64_t retransmissions_ = 0;
};

}  // namespace coapgw::exchange
