// coapgw::session::Session — one CoAP conversation with one peer, after libcoap's coap_session(3).
//
// A session is keyed by (remote address and port, local port, protocol) and owned by exactly one
// per-worker Table. Its lifetime follows the man page's reference-count rules, which the Table
// enforces: client sessions start at 1 and are freed when released to 0; server sessions start at
// 0 and, while unreferenced, sit in the table's idle pool until the idle timeout or until reclaimed
// least-recently-used-first for a newcomer when the process-wide session budget is exhausted.
// "Pending traffic" (a CON awaiting its ACK, an upstream request in flight, a handshake) holds a
// reference, so a session with traffic is never idle and never reclaimed.
//
// The struct is kept small (an idle plain-CoAP session costs well under 300 bytes including its
// table entry): rarely used fields live in a lazily allocated Extras block.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "common/address.hpp"

namespace coapgw::session {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

enum class Proto : std::uint8_t { none = 0, udp, dtls, tcp, tls, ws, wss };
// RFC 8323 transports: the stream delivers every message once and in order, so the message layer
// neither deduplicates, acknowledges nor retransmits on them (exchange::Layer's reliable mode).
constexpr bool is_reliable(Proto p) { return p == Proto::tcp || p == Proto::tls || p == Proto::ws || p == Proto::wss; }
// Sessions whose peer proved a key or certificate (DTLS, TLS, WebSocket over TLS). The others (plain
// UDP, TCP, WebSocket) are anyone's: they never displace, or share bounded state with, the former.
constexpr bool authenticated(Proto p) { return p == Proto::dtls || p == Proto::tls || p == Proto::wss; }
enum class Type : std::uint8_t { none = 0, client, server, hello };
enum class State : std::uint8_t { none = 0, connecting, handshake, csm, established };

// coap_nack_reason_t: why a session was force-closed with disconnected().
enum class NackReason : std::uint8_t {
  too_many_retries, not_deliverable, rst, tls_failed, icmp_issue, bad_response, tls_layer_failed
};

// Why a session left the table; the label of coapgw_sessions_closed_total.
enum class CloseReason : std::uint8_t {
  idle_timeout, evicted, peer_closed, tls_failed, handshake_timeout, disconnected, shutdown,
  revoked,  // its PSK or certificate no longer stands (reload, or a restored session)
};

// coap_event_t subset the gateway reacts to.
enum class Event : std::uint8_t {
  session_new, session_established, session_closed, dtls_connected, dtls_closed, dtls_error,
  message_retransmitted, bad_packet
};

// coap_tls_library_t.
enum class TlsLibrary : std::uint8_t { none = 0, openssl };

std::string_view to_string(Proto);
std::string_view to_string(Type);
std::string_view to_string(State);
std::string_view to_string(NackReason);
std::string_view to_string(CloseReason);
std::string_view to_string(Event);

inline constexpr std::size_t proto_count = 7;
inline constexpr std::size_t type_count = 4;
inline constexpr std::size_t state_count = 5;

// The security layer of a DTLS session (the worker wraps its DTLS engine in this), so that the
// session model does not depend on OpenSSL.
class TlsState {
 public:
  virtual ~TlsState() = default;
  virtual void* native_handle() const = 0;  // SSL*, or nullptr once the handshake object is freed
  virtual TlsLibrary library() const = 0;
  virtual std::span<const std::byte> psk_key() const = 0;
  virtual std::string_view psk_hint() const = 0;
  virtual std::string_view identity() const = 0;
};

// coap_context_t analogue: the worker that owns a table.
class Context {
 public:
  virtual ~Context() = default;
  virtual int worker_index() const = 0;
};

class Table;

// (remote address and port, local port, protocol) as in coap_session(3), plus which of the worker's
// sockets: two listeners on the same port but different local addresses are different sessions.
struct Key {
  Address remote;
  std::uint16_t local_port = 0;
  Proto proto = Proto::none;
  std::uint8_t endpoint = 0;
  friend bool operator==(const Key&, const Key&) = default;
};
struct KeyHash {
  std::size_t operator()(const Key& k) const {
    return k.remote.hash() ^ (std::size_t{k.local_port} << 7) ^ static_cast<std::size_t>(k.proto) ^
           (std::size_t{k.endpoint} << 17);
  }
};

using AppDataRelease = void (*)(void*);

class Session {
 public:
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  std::uint64_t id() const { return id_; }

  // coap_session_reference(): one more reference; a referenced session is never idle nor reclaimed.
  Session& reference();
  // coap_session_release(): one reference less. At 0 a client session is freed (and `this` is gone);
  // a server session moves to the idle pool. Releasing an unreferenced session is a no-op.
  void release();
  // coap_session_disconnected(): force-close, drop outstanding traffic. The session leaves the key
  // index at once (the peer's next datagram makes a new session) and is freed when unreferenced.
  void disconnected(NackReason reason);
  // coap_session_set_type_client(): server -> client (Call-Home); adds one reference.
  // Returns false if the session is not a server session.
  bool set_type_client();
  // The end of Call-Home: client -> server again, dropping set_type_client()'s reference (the session
  // goes to the idle pool when nothing else holds it). Returns false if it is not an open client session.
  bool set_type_server();

  // coap_session_set/get_app_data(). The release hook (may be null) runs when the data is replaced
  // or the session is freed.
  void set_app_data(void* data, AppDataRelease release = nullptr);
  void* app_data() const { return app_data_; }

  const Address& addr_local() const { return local_; }
  const Address* addr_mcast() const;          // nullptr unless a client session sent to a group
  const Address& addr_remote() const { return remote_; }
  Context* context() const;
  int ifindex() const { return ifindex_; }
  Proto proto() const { return proto_; }
  State state() const { return state_; }
  Type type() const { return type_; }
  // coap_session_get_tls(): SSL* for DTLS sessions that still have one, nullptr otherwise.
  void* tls(TlsLibrary* library) const;
  // Server sessions only; empty span when there is none.
  std::span<const std::byte> psk_hint() const;
  std::span<const std::byte> psk_key() const;

  int refcount() const { return refcount_; }
  bool idle() const;                  // in the idle pool
  bool closed() const { return closed_; }
  TimePoint created() const { return created_; }
  TimePoint last_seen() const { return last_seen_; }
  std::uint16_t local_port() const { return key_port_; }
  // The remote address can change (a multicast responder); the key stays what it was created with.
  Key key() const { return Key{extras_ ? extras_->key_remote : remote_, key_port_, proto_, endpoint_}; }

  // Transport-facing setters used by the worker.
  void set_state(State state);
  void set_ifindex(int ifindex) { ifindex_ = ifindex; }
  void set_addr_local(const Address& local) { local_ = local; }
  void set_tls(std::unique_ptr<TlsState> tls);
  TlsState* tls_state() const;
  // Client sessions to a multicast group: the remote address answers come from; the group is kept and
  // restored by reset_remote_to_mcast() before the next send.
  void set_addr_mcast(const Address& group);
  void set_addr_remote_responder(const Address& responder);
  void reset_remote_to_mcast();
  std::uint16_t next_message_id() { return next_mid_++; }
  // Which of the worker's listening sockets this session talks through (part of its key).
  std::uint8_t endpoint() const { return endpoint_; }

 private:
  friend class Table;
  Session(Table* table, std::uint64_t id, const Key& key, const Address& local, Type type, TimePoint now,
          std::uint16_t first_message_id);

  struct Extras {  // multicast client sessions only
    Address key_remote;  // remote_ when the extras were made, before it could change
    Address mcast;
    bool has_mcast = false;
  };
  Extras& extras();

  Table* table_;
  Session* lru_prev_ = nullptr;  // idle-pool links, owned by Table
  Session* lru_next_ = nullptr;
  std::unique_ptr<Extras> extras_;
  std::unique_ptr<TlsState> tls_;
  void* app_data_ = nullptr;
  AppDataRelease app_release_ = nullptr;
  std::uint64_t id_;
  TimePoint created_;
  TimePoint last_seen_;
  Address remote_;
  Address local_;
  std::int32_t refcount_ = 0;
  std::int32_t ifindex_ = -1;
  std::uint16_t key_port_;
  std::uint16_t next_mid_ = 0;
  Proto proto_;
  Type type_;
  State state_ = State::none;
  std::uint8_t endpoint_ = 0;
  bool in_pool_ = false;
  bool closed_ = false;   // disconnected or freed-pending: no longer in the key index
};

}  // namespace coapgw::session
