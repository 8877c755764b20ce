// RFC 9146 Connection IDs in the DTLS transport: the CIDs this worker issues (CidIndex, installed
// as the DTLS context's issuer), the lookup of a tls12_cid record's session whatever address it
// came from, the move of that session's address when (and only when) the record authenticated and
// was the newest seen, the hand-off (through the Host) of records whose CID names another
// worker, and the parking of a session whose address another peer took over.
#include <openssl/err.h>
#include <openssl/rand.h>
#include <prometheus/counter.h>

#include <array>

#include "common/bytes.hpp"
#include "common/log.hpp"
#include "dtls/engine.hpp"
#include "dtls/output.hpp"
#include "dtls/server_context.hpp"
#include "dtls/wire.hpp"
#include "metrics/metrics.hpp"
#include "server/cid_index.hpp"
#include "server/persist.hpp"
#include "server/dtls_tls.hpp"
#include "server/dtls_transport.hpp"
#include "net/udp_socket.hpp"

namespace coapgw::server {

using metrics::BadReason;

namespace {

bool random_bytes(std::span<std::byte> out) {
  if (out.empty()) return true;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size())) == 1) return true;
  ERR_clear_error();
  return false;
}

}  // namespace

void DtlsTransport::set_context(std::unique_ptr<dtls::ServerContext> context) {
  context_ = std::move(context);
  if (context_ && lookup_) context_->set_registry(&lookup_->cache());
  cids_.reset();
  if (!context_ || context_->settings().connection_id.length == 0) return;
  cids_ = std::make_unique<CidIndex>(context_->settings().connection_id.node_id, settings_.worker_index, random_bytes);
  context_->set_cid_issuer([this](std::span<std::byte> cid) { return cids_->issue(cid); });
}

bool DtlsTransport::register_cid(session::Session& s) {
  auto* engine = engine_of(s);
  if (!cids_ || engine == nullptr || engine->connection_id().empty()) return true;
  return cids_->insert(engine->connection_id(), &s);
}

void DtlsTransport::forget_cid(session::Session& s) {
  auto* engine = cids_ ? engine_of(s) : nullptr;
  if (engine != nullptr && !engine->connection_id().empty()) cids_->erase(engine->connection_id(), &s);
}

std::string DtlsTransport::cid_hex(session::Session& s) const {
  auto* engine = s.proto() == session::Proto::dtls ? engine_of(s) : nullptr;
  if (engine == nullptr) return {};
  return bytes::hex_encode(engine->connection_id());
}

bool DtlsTransport::on_cid_datagram(const Arrival& at, const net::ReceivedDatagram& d, session::TimePoint now) {
  const std::size_t length = cids_ ? context_->settings().connection_id.length : 0;
  if (length == 0 || d.data.size() < dtls::wire::record_header_size + length ||
      d.data[0] != static_cast<std::byte>(dtls::wire::ContentType::tls12_cid)) {
    return false;
  }
  const auto cid = d.data.subspan(11, length);
  // Not one of ours (another node's, or forged): the ordinary path counts it.
  if (cid[0] != std::byte{context_->settings().connection_id.node_id}) return false;
  if (const auto owner = CidIndex::worker_of(cid); owner && *owner != settings_.worker_index) {
    // The kernel hashed the device's new 4-tuple to this worker; its session lives on the owner.
    log::trace("dtls record with a connection id of worker " + std::to_string(*owner) + " from " +
               d.peer.to_string() + ": handed to its owner");
    return host_.hand_to_worker(*owner, at.endpoint, d);
  }
  session::Session* s = cids_->find(cid);
  if (s == nullptr) return restore_by_cid(at, d, cid, now);
  // Records from the session's own address take the ordinary path.
  if (s == nullptr || s->closed() || s->state() != session::State::established || s->endpoint() != at.endpoint ||
      s->addr_remote() == d.peer) {
    return false;
  }
  auto* engine = engine_of(*s);
  auto& out = *out_;
  out.clear();
  const auto bad_before = engine->bad_records();
  engine->on_datagram(d.data, out, now);
  if (auto bad = engine->bad_records() - bad_before; bad != 0) host_.count_bad(BadReason::dtls_bad_record, bad);
  // RFC 9146 6: the address moves only with a record that authenticated and is the newest seen;
  // a replayed, reordered or forged record from elsewhere leaves the session where it is.
  if (out.newest && !s->closed()) move_session(*s, at, d);
  if (!out.plaintexts.empty()) table_.mark_used(*s, now);
  handle_output(*s, out, now);
  return true;
}

bool DtlsTransport::restore_by_cid(const Arrival& at, const net::ReceivedDatagram& d, std::span<const std::byte> cid,
                                   session::TimePoint now) {
  // A session saved at our last stop (sessions.persist) whose device's address changed meanwhile:
  // found by its CID, claimed like any restored session by a record that authenticates.
  if (restored_ == nullptr || restored_->empty() || host_.draining()) return false;
  const auto saved = restored_->peer_of_cid(cid);
  const session::Key key{d.peer, at.port, session::Proto::dtls, at.endpoint};
  if (!saved) return false;
  // The record's source may be the address of another session: with a CID that one is parked once
  // this record authenticates (restore()); without one it keeps its address.
  if (auto* other = table_.find(key); other != nullptr && !has_cid(*other)) return false;
  auto& out = *out_;
  out.clear();
  RestoreMiss miss;
  auto* s = restore(at, d, out, now, miss, &*saved);
  if (s == nullptr) {
    if (miss.bad_records != 0) host_.count_bad(BadReason::dtls_bad_record, miss.bad_records);
    return miss.bad_records != 0 || miss.held;
  }
  if (*saved != d.peer) {
    metrics_.dtls_address_changes().Increment();
    log::debug("restored dtls session found by its connection id, moved from " + saved->to_string() + " to " +
                   d.peer.to_string(),
               s->id());
  }
  handle_output(*s, out, now);
  return true;
}

void DtlsTransport::move_session(session::Session& s, const Arrival& at, const net::ReceivedDatagram& d) {
  const Address from = s.addr_remote();
  if (!table_.move_remote(s, d.peer)) {
    // Another session holds the new address: its peer is no longer there (this authenticated
    // record just came from it), so that session goes; one with a CID is parked instead (behind
    // a balancer the address may have passed to this device while the other's device lives on).
    session::Key taken{d.peer, s.local_port(), session::Proto::dtls, s.endpoint()};
    if (auto* other = table_.find(taken); other != nullptr && other != &s && !park(*other)) {
      close(*other, session::CloseReason::disconnected);
    }
    if (!table_.move_remote(s, d.peer)) return;
  }
  s.set_ifindex(d.ifindex);
  if (at.wildcard) s.set_addr_local(d.local);
  host_.identified(s);  // indexes that hold the session's key follow the move
  metrics_.dtls_address_changes().Increment();
  log::debug("dtls session moved with its connection id from " + from.to_string() + " to " + d.peer.to_string(),
             s.id());
}

bool DtlsTransport::has_cid(session::Session& s) const {
  auto* engine = engine_of(s);
  return engine != nullptr && !engine->connection_id().empty();
}

namespace {

// Behind a balancer or a NAT an address is handed to another device once the old mapping is
// forgotten (nginx reuses the source ports of its upstream sockets), while the device that had it
// may still hold its session and come back from elsewhere with its CID. Such a session moves to
// an address no datagram comes from (the RFC 6666 discard prefix 100::/64 with the session id)
// and stays until its device's next record (found by CID) or its idle timeout.
Address parking_address(std::uint64_t session_id) {
  std::array<std::uint8_t, 16> discard{0x01};
  for (int i = 0; i < 8; ++i) discard[15 - i] = static_cast<std::uint8_t>(session_id >> (8 * i));
  return Address::v6(discard, 0);
}

}  // namespace

bool DtlsTransport::park_quietly(session::Session& s) {
  if (s.closed() || !has_cid(s)) return false;
  if (!table_.move_remote(s, parking_address(s.id()))) return false;
  host_.identified(s);
  return true;
}

void DtlsTransport::count_park(std::uint64_t session_id, const Address& from) {
  metrics_.dtls_sessions_parked().Increment();
  log::debug("dtls session parked: " + from.to_string() + " is now another peer's; found again by its connection id",
             session_id);
}

bool DtlsTransport::park(session::Session& s) {
  const Address from = s.addr_remote();
  if (!park_quietly(s)) return false;
  count_park(s.id(), from);
  return true;
}

session::Session* DtlsTransport::take_over_address(const session::Key& key, const Address& local, int ifindex,
                                                   session::TimePoint now, bool close_other) {
  std::optional<std::uint64_t> parked;
  if (auto* other = table_.find(key)) {
    if (park_quietly(*other)) parked = other->id();
    else if (close_other) table_.close(*other, session::CloseReason::peer_closed);
    else return nullptr;
  }
  auto* s = table_.create_server(key, local, ifindex, now, session::State::established);
  if (!parked) return s;
  // Found by its parking address: making room may have evicted it (then there is nothing to count
  // or to move back).
  auto* other = table_.find(session::Key{parking_address(*parked), key.local_port, key.proto, key.endpoint});
  if (other == nullptr) return s;
  if (s != nullptr) {
    count_park(*parked, key.remote);
  } else if (table_.move_remote(*other, key.remote)) {
    host_.identified(*other);  // nothing took the address: the session keeps it
  }
  return s;
}

void DtlsTransport::on_handed_datagram(const Arrival& at, const net::ReceivedDatagram& d, session::TimePoint now) {
  if (!context_) return;
  // Once the session moved to the device's new address, that address's records keep reaching
  // another worker's socket and are handed here: they take the ordinary path (found by address),
  // which counts dtls_no_session itself when there is no session.
  on_datagram(at, d, now);
}

}  // namespace coapgw::server
