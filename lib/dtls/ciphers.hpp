// coapgw::dtls::ciphers — the one list of DTLS 1.2 cipher suites (OpenSSL names), for both
// directions: the device-facing server (ServerContext, when dtls.ciphers is not set) and the
// coaps:// upstream client (ClientContext). AEAD suites only (the lean record layer protects no
// other kind), most preferred first.
#pragma once

#include <string>

namespace coapgw::dtls::ciphers {

// PSK: AES-128-CCM8 is RFC 7925's mandatory-to-implement suite; CCM and GCM for peers without it.
inline constexpr char psk[] = "PSK-AES128-CCM8:PSK-AES128-CCM:PSK-AES128-GCM-SHA256";

// Certificates: ECDHE-ECDSA-AES128-CCM8 for RFC 7925; RSA so an RSA certificate is not a silent
// failure.
inline constexpr char certificate[] =
    "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

// The default list for a server with these credentials ("" with neither).
inline std::string default_list(bool with_psk, bool with_certificate) {
  std::string list;
  if (with_psk) list = psk;
  if (with_certificate) {
    if (!list.empty()) list += ':';
    list += certificate;
  }
  return list;
}

}  // namespace coapgw::dtls::ciphers
