// coapgw::openssl_error — the one way an OpenSSL failure becomes text for a log line or an
// exception (device-facing DTLS server context, coaps:// client). No I/O.
#pragma once

#include <string>
#include <string_view>

namespace coapgw {

// `what`, then ": " and OpenSSL's text for the newest error on this thread's error queue when
// there is one; the queue is cleared either way, so a later failure is not blamed on this one.
std::string openssl_error(std::string_view what);

}  // namespace coapgw
