#include "upstream/file_record.hpp"

#include "common/json.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace coapgw::upstream {

// OpenSSL's EVP_EncodeBlock writes exactly this format (RFC 4648 base64, padded, no line breaks),
// so it replaces a hand-written encoder. It takes an int length: long input goes in chunks of a
// multiple of 3 bytes, which concatenate to the same text as one call.
std::string base64_encode(std::span<const std::byte> bytes) {
  constexpr std::size_t chunk = 3 * (std::size_t{1} << 20);
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');  // + EVP_EncodeBlock's NUL
  std::size_t written = 0;
  for (std::size_t at = 0; at < bytes.size(); at += chunk) {
    const std::size_t n = std::min(chunk, bytes.size() - at);
    written += static_cast<std::size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data() + written),
                                                        reinterpret_cast<const unsigned char*>(bytes.data() + at),
                                                        static_cast<int>(n)));
  }
  out.resize(written);
  return out;
}

std::string rfc3339_utc_ms(std::chrono::system_clock::time_point t) {
  return json::rfc3339_utc_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

std::string format_file_record(const ForwardRequest& r, std::chrono::system_clock::time_point now) {
  std::string line;
  line.reserve(160 + r.path.size() + r.query.size() + r.payload.size() * 4 / 3 + r.identity.size());
  json::ObjectWriter o(line);
  o.string("ts", rfc3339_utc_ms(now)).string("identity", r.identity);
  if (!r.tenant.empty()) o.string("tenant", r.tenant);  // the device registry's (dtls.psk.lookup)
  o.number("session", static_cast<std::int64_t>(r.session_id))
      .string("remote", r.remote)
      .string("method", r.method)
      .string("path", r.path)
      .string("query", r.query);
  if (r.content_format) o.number("content_format", *r.content_format);
  else o.null("content_format");
  if (json::is_valid_utf8(r.payload))
    o.string("payload", std::string_view(reinterpret_cast<const char*>(r.payload.data()), r.payload.size()));
  else
    o.string("payload_b64", base64_encode(r.payload));
  o.close();
  line += '\n';
  return line;
}

}  // namespace coapgw::upstream
