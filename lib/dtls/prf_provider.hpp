// coapgw::dtls::detail::prf_provider_query — an OpenSSL provider ("coapgw-prf", built in, loaded
// once into the default library context) whose only algorithm is the KDF "TLS1-PRF", computed with
// prf.hpp's pre-keyed HMAC. The DTLS contexts are created with the property query this returns,
// so libssl's own PRF calls (master secret, key block, both Finished) use it; OpenSSL's TLS1-PRF
// spends most of each call on provider bookkeeping (issue 17, item 5). Digests other than
// SHA-256/384 are handed to another provider's TLS1-PRF (the default's, or the FIPS provider's
// where only that one is loaded), so any other user of "TLS1-PRF" that happens to get this one
// gets the same bytes. With "fips=yes" in OpenSSL's default properties this provider (which has no
// such property) is never chosen: libssl then uses the FIPS provider's PRF. Internal header.
#pragma once

namespace coapgw::dtls::detail {

// "?provider=coapgw-prf" (a preference, not a requirement) once the provider is loaded; nullptr
// when it could not be (the contexts then use OpenSSL's PRF).
const char* prf_provider_query();

}  // namespace coapgw::dtls::detail
