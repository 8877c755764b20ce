// coapgw::server::live_hello — what to do with a cookie-less ClientHello from the address of an
// established DTLS session.
//
// The address of a live session is either the device (which rebooted, lost its keys and must
// handshake again) or anyone forging it. The RFC 6347 §4.2.8 answer, a HelloVerifyRequest, goes to
// the real device, and DTLS stacks in the middle of an established session treat it as fatal
// (OpenSSL 3.0 `s_client` stops), so a forged ClientHello must not earn one while the device is
// alive. Whether it is alive is decided by authenticated records only (a forger cannot make them):
//   - a record authenticated within `live_window`: the device is talking; drop the ClientHello;
//   - otherwise, ask the device: send a CoAP ping (empty CON, RFC 7252 §4.3) through the session,
//     at most once per `probe_interval` (10 s), and drop the ClientHello; a device with its keys answers
//     (RST), which is an authenticated record;
//   - a probe older than `probe_wait` that nothing authenticated has followed: the device no longer
//     holds the session (it rebooted): the ClientHello takes the normal cookie exchange.
// A rebooted device's ClientHello retransmissions (1 s, 2 s, 4 s ... apart) reach the third case
// after about live_window + probe_wait; if a forger's ClientHello had the device ping-answered
// just before it rebooted, after at most probe_interval + probe_wait. A forger costs the device at
// most one ping per probe_interval. "Authenticated" is the session's last authenticated record
// (DtlsTls::last_authenticated), never the idle pool's bookkeeping. Pure: times are passed in.
#pragma once

#include <chrono>

namespace coapgw::server::live_hello {

using time_point = std::chrono::steady_clock::time_point;

struct Timing {
  std::chrono::milliseconds live_window{3000};
  std::chrono::milliseconds probe_wait{2000};
  std::chrono::milliseconds probe_interval{10000};
};

enum class Verdict {
  drop_live,     // authenticated traffic within live_window
  probe,         // send a CoAP ping through the session (and remember when), drop the hello
  drop_waiting,  // a probe is out, or was answered: drop the hello
  handshake,     // the session's device is gone: normal cookie exchange
};

// `last_seen`: the session's last authenticated record; `probe_sent`: the last probe (a
// default-constructed time_point when none was sent).
inline Verdict decide(time_point now, time_point last_seen, time_point probe_sent, const Timing& t = {}) {
  if (now - last_seen < t.live_window) return Verdict::drop_live;
  const bool probed = probe_sent != time_point{};
  if (!probed || now - probe_sent >= t.probe_interval) return Verdict::probe;
  if (last_seen >= probe_sent) return Verdict::drop_waiting;  // answered since: alive
  if (now - probe_sent < t.probe_wait) return Verdict::drop_waiting;
  return Verdict::handshake;
}

}  // namespace coapgw::server::live_hello
