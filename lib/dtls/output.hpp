// coapgw::dtls::Output — everything one engine call produced. The worker keeps
// one per thread and clear()s it between calls, so the outer vectors keep
// their capacity.
#pragma once

#include <cstddef>
#include <vector>

#include "dtls/settings.hpp"

namespace coapgw::dtls {

struct Output {
  std::vector<std::vector<std::byte>> datagrams;   // to send to the peer, in order
  std::vector<std::vector<std::byte>> plaintexts;  // decrypted application data, one per record
  bool established = false;  // set once, on the call where the handshake completed
  bool closed = false;       // peer sent close_notify or a fatal alert, or we failed
  Failure failure = Failure::none;
  // An established session's record authenticated and was the newest seen (it moved the replay
  // window on): RFC 9146 6 lets the peer's address follow such a record, and only such a record.
  bool newest = false;

  void clear() {
    datagrams.clear();
    plaintexts.clear();
    established = false;
    closed = false;
    failure = Failure::none;
    newest = false;
  }
};

}  // namespace coapgw::dtls
