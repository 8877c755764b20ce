// coapgw::server::DtlsTransport — the DTLS datagram transport of one worker: everything between a
// datagram on a coaps listener and a whole CoAP message for a session, and back.
//
// It owns the worker's DTLS server context (stateless cookies, PSK store, client CA), the
// handshakes in progress (dtls.max_handshakes and max_handshakes_per_ip, this worker's share), the
// replacement handshakes of rebooted devices beside their live sessions, the HelloVerifyRequest
// limiter, the ClientHello policy for live sessions (live_hello.hpp), the handshake back-off, the
// claiming of sessions restored from the persist file, revocation when credentials change, and the
// mapping of DTLS endings to session close reasons. Each session's dtls::Engine hangs off the
// session (DtlsTls). It does no I/O of its own: datagrams go out and messages go up through the
// Host, which the worker implements (socket batches, the message layer). The plain UDP transport
// needs none of this and stays in the worker's dispatch.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>

#include "common/address.hpp"
#include "dtls/failure_backoff.hpp"
#include "metrics/labels.hpp"
#include "server/handshake_set.hpp"
#include "server/hello_limiter.hpp"
#include "server/psk_lookup.hpp"
#include "session/table.hpp"

namespace coapgw::metrics {
class Metrics;
}
namespace coapgw::net {
struct ReceivedDatagram;
}
namespace coapgw::dtls {
struct Credentials;
class ServerContext;
class Engine;
struct Output;
class PskStore;
class TrustStore;
enum class Standing : std::uint8_t;
}  // namespace coapgw::dtls

namespace coapgw::server {

namespace persist {
class RestoredPool;
}

class CidIndex;

class DtlsTransport {
 public:
  // What the transport needs from the worker it runs on.
  class Host {
   public:
    virtual ~Host() = default;
    // One decrypted application record: one CoAP message for the message layer.
    virtual void deliver(session::Session& s, std::span<const std::byte> message, session::TimePoint now) = 0;
    virtual void send_datagram(std::uint8_t endpoint, const Address& peer, const Address& local,
                               std::span<const std::byte> datagram) = 0;
    // A CoAP ping (empty CON) through the session (live_hello.hpp).
    virtual void ping(session::Session& s) = 0;
    virtual void count_bad(metrics::BadReason reason, std::uint64_t n) = 0;
    virtual bool draining() const = 0;
    // The session's authenticated identity is now known (its app data is set), or its address
    // moved (RFC 9146): indexes by identity refresh its key.
    virtual void identified(session::Session& /*s*/) {}
    // A record whose RFC 9146 Connection ID names another worker: hand it to that worker's
    // transport (on_handed_datagram). False when there is no such worker.
    virtual bool hand_to_worker(int worker, std::uint8_t endpoint, const net::ReceivedDatagram& d) = 0;
  };

  struct Settings {
    int worker_index = 0;                     // named in the CIDs this worker issues
    std::size_t max_handshakes = 1000;        // this worker's share of dtls.max_handshakes
    std::size_t max_handshakes_per_ip = 100;  // ... of dtls.max_handshakes_per_ip; 0 = none
    dtls::FailureBackoff::Settings backoff;
    std::chrono::milliseconds idle_timeout{300000};  // restored sessions older than this are not claimed
  };

  // Where a datagram arrived: the listener's index and bound port, and whether it is bound to a
  // wildcard address (then the session's local address follows the datagram's destination).
  struct Arrival {
    std::uint8_t endpoint = 0;
    std::uint16_t port = 0;
    bool wildcard = false;
  };

  DtlsTransport(Settings settings, Host& host, session::Table& table, metrics::Metrics& metrics);
  ~DtlsTransport();
  DtlsTransport(const DtlsTransport&) = delete;
  DtlsTransport& operator=(const DtlsTransport&) = delete;

  void set_context(std::unique_ptr<dtls::ServerContext> context);
  bool enabled() const { return context_ != nullptr; }
  void set_restored_pool(persist::RestoredPool* pool) { restored_ = pool; }

  void on_datagram(const Arrival& at, const net::ReceivedDatagram& d, session::TimePoint now);
  // A tls12_cid record another worker received for one of this worker's CIDs.
  void on_handed_datagram(const Arrival& at, const net::ReceivedDatagram& d, session::TimePoint now);
  // The session's Connection ID in hex ("" without one), for /v1/sessions.
  std::string cid_hex(session::Session& s) const;
  // Seals one CoAP message for an established session and sends it. True when the engine ended the
  // session (write sequence exhausted): the caller closes it, outside its own frame.
  bool send(session::Session& s, std::span<const std::byte> message);
  // Handshake and replacement-handshake retransmissions and timeouts, cookie secret rotation.
  void on_tick(session::TimePoint now);
  // close_notify (when established), then the session is closed with `reason` (may free it).
  void close(session::Session& s, session::CloseReason reason);
  // The session is closing: it is no longer a handshake in progress (releases that reference) and
  // its Connection ID is free again.
  void forget(session::Session& s);
  // Swaps the PSK store and client CA (null trust: keep) and closes, with reason `revoked`, every
  // established session whose key or certificate no longer stands.
  std::size_t apply_credentials(std::shared_ptr<const dtls::PskStore> store,
                                std::shared_ptr<const dtls::TrustStore> trust);
  // dtls.psk.lookup (registry_path.cpp): identities not in the local keys are asked of the device
  // registry; the held handshakes go on in on_key_answer (PskLookup's Answered, on this thread).
  void set_psk_lookup(std::unique_ptr<PskLookup> lookup);
  PskLookup* psk_lookup() const { return lookup_.get(); }  // the stream transport shares it
  void on_key_answer(const std::string& identity, std::vector<PskLookup::Held> held, session::TimePoint now);
  // Handshakes completed since the last call (the worker trims malloc arenas after them).
  std::uint64_t take_handshakes_completed() { return std::exchange(handshakes_completed_, 0); }
  // Drops the handshakes in progress (shutdown, after the table closed its sessions).
  void clear();

 private:
  struct Rehandshake;
  bool hello_may_replace(session::Session& s, session::TimePoint now);
  void handle_output(session::Session& s, dtls::Output& out, session::TimePoint now);
  void send_datagrams(std::uint8_t endpoint, const Address& peer, const Address& local, dtls::Output& out);
  // Why restore() gave no session: records that did not authenticate, or the datagram is held
  // until the device registry answers for the saved identity.
  struct RestoreMiss {
    std::uint64_t bad_records = 0;
    bool held = false;
  };
  // `saved_peer`: the address the state was saved under when it is not d.peer (found by its
  // RFC 9146 Connection ID after the device's address changed).
  session::Session* restore(const Arrival& at, const net::ReceivedDatagram& d, dtls::Output& out,
                            session::TimePoint now, RestoreMiss& miss, const Address* saved_peer = nullptr);
  // registry_path.cpp: a saved session whose identity is not in the local keys. The registry's
  // cached answer decides; without one the datagram is held for a lookup (nullopt), and after a
  // lookup that failed the session stands (`recheck`: ask again later), as a live one would.
  // Only a session saved with a registry key (`registry_keyed`) stands without an answer.
  std::optional<dtls::Standing> restored_standing(const dtls::Credentials& credentials, bool registry_keyed,
                                                  const Arrival& at, const net::ReceivedDatagram& d,
                                                  session::TimePoint now, bool* recheck);
  // cid_path.cpp (RFC 9146): true when `d` was a tls12_cid record handled here (its session found
  // by CID from another address, or handed to the worker that issued the CID).
  bool on_cid_datagram(const Arrival& at, const net::ReceivedDatagram& d, session::TimePoint now);
  bool restore_by_cid(const Arrival& at, const net::ReceivedDatagram& d, std::span<const std::byte> cid,
                      session::TimePoint now);
  void move_session(session::Session& s, const Arrival& at, const net::ReceivedDatagram& d);
  // A session with a CID whose address another peer now uses: kept, found by its CID (cid_path.cpp).
  bool park(session::Session& s);
  bool park_quietly(session::Session& s);  // park() without counting it
  void count_park(std::uint64_t session_id, const Address& from);
  // The established session for `key`, created once the session that holds the key moved out of
  // the way: parked when it has a CID, else closed (peer_closed) when `close_other`, else nullptr.
  // The park is counted once the new session exists; without one the parked session gets its
  // address back.
  session::Session* take_over_address(const session::Key& key, const Address& local, int ifindex,
                                      session::TimePoint now, bool close_other);
  bool has_cid(session::Session& s) const;
  // Index an established session under its CID; false when another live session holds it.
  bool register_cid(session::Session& s);
  void forget_cid(session::Session& s);
  void on_rehandshake_datagram(const Arrival& at, session::Session* old, const net::ReceivedDatagram& d,
                               session::TimePoint now);
  // The replacing session, or nullptr when the new handshake was refused.
  session::Session* finish_rehandshake(const session::Key& key, session::TimePoint now);
  std::size_t handshakes_of_ip(const Address& peer) const;
  // `registry_keyed`: the session's key came from the device registry (DtlsTls::registry_keyed).
  dtls::Standing standing_of(const dtls::Engine& engine, bool registry_keyed = false) const;
  // The local keys, then the registry's cached answer (registry_path.cpp).
  dtls::Standing standing_of(const dtls::Credentials& credentials, bool registry_keyed) const;
  // A known session's datagram through its engine: records opened, output handled.
  void feed(session::Session& s, std::span<const std::byte> data, int ifindex, const Address& local, bool wildcard,
            session::TimePoint now);
  // registry_path.cpp: true when the datagram was held (or dropped) for a registry lookup.
  bool hold_for_key(session::Session& s, const Arrival& at, const net::ReceivedDatagram& d, session::TimePoint now);
  void note_registry_session(session::Session& s);    // established: indexed when its key is the registry's
  void forget_registry_session(session::Session& s);  // closing
  // A handshake that began before the last reload and whose credentials no longer stand.
  bool stale_credentials(const dtls::Engine& engine) const;
  static metrics::HandshakeResult handshake_result(const dtls::Engine& engine);

  Settings settings_;
  Host& host_;
  session::Table& table_;
  metrics::Metrics& metrics_;
  std::unique_ptr<dtls::ServerContext> context_;
  std::unique_ptr<CidIndex> cids_;  // null when dtls.connection_id.length is 0
  std::unique_ptr<dtls::Output> out_;       // for received datagrams and timers
  std::unique_ptr<dtls::Output> send_out_;  // for send() and close(), which run inside handle_output
  persist::RestoredPool* restored_ = nullptr;
  bool replaying_restore_ = false;  // on_key_answer re-drives a held record of a saved session
  // DTLS sessions still in their handshake; each holds a session reference.
  HandshakeSet handshaking_;
  // New handshakes from the address of an established session (a rebooted device). The live session
  // stays until the new handshake completes, so a ClientHello alone cannot end it.
  std::unordered_map<session::Key, std::unique_ptr<Rehandshake>, session::KeyHash> rehandshakes_;
  std::unique_ptr<HelloLimiter> hello_limiter_ = std::make_unique<HelloLimiter>();
  std::unique_ptr<HelloLimiter> busy_limiter_ = std::make_unique<HelloLimiter>(1);  // HelloVerdict::busy answers
  dtls::FailureBackoff backoff_;  // addresses whose handshakes keep failing
  std::uint64_t handshakes_completed_ = 0;
  std::unique_ptr<PskLookup> lookup_;  // null without dtls.psk.lookup.url
};

}  // namespace coapgw::server
