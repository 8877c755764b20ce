#include "dtls/flight_filter.hpp"

#include <cstdint>

#include "common/bytes.hpp"
#include "dtls/wire.hpp"

namespace coapgw::dtls {
namespace {

std::uint32_t be24(std::span<const std::byte> b) { return bytes::load_be24(b.data()); }

bool client_message_type(std::uint8_t type) {
  switch (type) {
    case 1:   // client_hello (a retransmission)
    case 11:  // certificate
    case 15:  // certificate_verify
    case 16:  // client_key_exchange
      return true;
    default:
      return false;
  }
}

// Every message fragment in the record is whole and of a kind a client sends (RFC 6347 4.2.2:
// type, length, message_seq, fragment_offset, fragment_length, then the fragment).
bool plausible_handshake(std::span<const std::byte> fragment) {
  if (fragment.empty()) return false;
  while (!fragment.empty()) {
    if (fragment.size() < 12) return false;
    const auto type = std::to_integer<std::uint8_t>(fragment[0]);
    const auto length = be24(fragment.subspan(1, 3));
    const auto offset = be24(fragment.subspan(6, 3));
    const auto piece = be24(fragment.subspan(9, 3));
    if (!client_message_type(type) || offset > length || piece > length - offset || piece > fragment.size() - 12)
      return false;
    fragment = fragment.subspan(12 + piece);
  }
  return true;
}

}  // namespace

FilteredFlight filter_client_flight(std::span<const std::byte> datagram, std::size_t cid_length) {
  FilteredFlight f;
  bool ccs_seen = false;
  std::span<const std::byte> rest = datagram;
  std::size_t kept_until = 0;  // bytes of `datagram` kept so far while nothing was dropped
  auto keep = [&](const wire::Record& r) {
    if (!f.changed) {
      kept_until += r.whole.size();
      return;
    }
    f.kept.insert(f.kept.end(), r.whole.begin(), r.whole.end());
  };
  auto drop = [&] {
    if (!f.changed) {
      f.changed = true;
      f.kept.assign(datagram.begin(), datagram.begin() + static_cast<std::ptrdiff_t>(kept_until));
    }
    ++f.dropped;
  };
  while (!rest.empty()) {
    const auto record = wire::next_record(rest, &rest, cid_length);
    if (!record) {
      drop();  // a truncated tail
      break;
    }
    using CT = wire::ContentType;
    const auto type = static_cast<CT>(record->type);
    bool pass = false;
    if (record->epoch == 1) {
      // With our CID negotiated the epoch-1 records are tls12_cid records, type hidden: the first
      // after the ChangeCipherSpec is the Finished.
      const bool cid = cid_length != 0 && type == CT::tls12_cid;
      pass = type == CT::handshake || type == CT::alert || type == CT::application_data || cid;
      if ((type == CT::handshake || cid) && ccs_seen) f.finished_after_ccs = true;
    } else if (record->epoch == 0) {
      if (type == CT::change_cipher_spec) {
        pass = record->fragment.size() == 1 && record->fragment[0] == std::byte{1};
        ccs_seen = ccs_seen || pass;
      } else if (type == CT::handshake) {
        pass = plausible_handshake(record->fragment);
      }
    }
    if (pass) keep(*record);
    else drop();
  }
  return f;
}

}  // namespace coapgw::dtls
