// coapgw::server::notify — systemd's readiness protocol (sd_notify(3)): one datagram with
// "READY=1", "RELOADING=1", "STOPPING=1", "WATCHDOG=1" to the unix socket named in $NOTIFY_SOCKET.
// Written against the documented protocol so the daemon needs no libsystemd; a no-op when the
// variable is unset (not under systemd).
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace coapgw::server::notify {

bool send(std::string_view state);   // false when not under systemd or the send failed
// WATCHDOG_USEC from the environment, when systemd enabled the watchdog for us.
std::optional<std::chrono::microseconds> watchdog_interval();
// CLOCK_MONOTONIC in microseconds, for "RELOADING=1\nMONOTONIC_USEC=...".
std::uint64_t monotonic_usec();

}  // namespace coapgw::server::notify
