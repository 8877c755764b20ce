// Reading a TLS client's PSK identity from its plaintext handshake; see tls_psk_identity.hpp.
#include "transport/tls_psk_identity.hpp"

#include <algorithm>

#include "common/bytes.hpp"

namespace coapgw::transport {

namespace {

constexpr std::uint8_t record_handshake = 22;
constexpr std::size_t record_header_size = 5;
constexpr std::size_t max_record = 16384;  // TLSPlaintext.length bound (RFC 8446 5.1, RFC 5246 6.2.1)
constexpr std::size_t message_header_size = 4;
constexpr std::uint8_t client_hello = 1;
constexpr std::uint8_t client_key_exchange = 16;
constexpr std::uint16_t pre_shared_key = 41;

// Reads big-endian fields and length-prefixed vectors off a span; any overrun turns ok off.
struct Reader {
  std::span<const std::byte> rest;
  bool ok = true;

  std::uint64_t number(std::size_t width) {
    if (!ok || rest.size() < width) {
      ok = false;
      return 0;
    }
    const auto v = bytes::load_be(rest.data(), width);
    rest = rest.subspan(width);
    return v;
  }
  std::span<const std::byte> take(std::uint64_t n) {
    if (!ok || rest.size() < n) {
      ok = false;
      return {};
    }
    auto out = rest.first(static_cast<std::size_t>(n));
    rest = rest.subspan(static_cast<std::size_t>(n));
    return out;
  }
  std::span<const std::byte> vector(std::size_t length_width) { return take(number(length_width)); }
};

std::string identity_text(std::span<const std::byte> id) {
  if (id.empty() || id.size() > TlsPskIdentity::max_identity) return {};
  return std::string(reinterpret_cast<const char*>(id.data()), id.size());
}

}  // namespace

std::string client_hello_psk_identity(std::span<const std::byte> body) {
  Reader r{body};
  r.number(2);                                  // legacy_version
  r.take(32);                                   // random
  if (r.vector(1).size() > 32) return {};       // legacy_session_id
  r.vector(2);                                  // cipher_suites
  r.vector(1);                                  // legacy_compression_methods
  if (!r.ok || r.rest.empty()) return {};       // no extensions: not TLS 1.3
  Reader extensions{r.vector(2)};
  if (!r.ok) return {};
  while (extensions.ok && !extensions.rest.empty()) {
    const auto type = extensions.number(2);
    const auto data = extensions.vector(2);
    if (!extensions.ok || type != pre_shared_key) continue;
    // OfferedPsks: identities<7..2^16-1> of {identity<1..2^16-1>, obfuscated_ticket_age}, binders.
    Reader offered{data};
    Reader identities{offered.vector(2)};
    const auto first = identities.vector(2);
    identities.number(4);
    if (!offered.ok || !identities.ok) return {};
    return identity_text(first);
  }
  return {};
}

std::string client_key_exchange_psk_identity(std::span<const std::byte> body) {
  Reader r{body};
  const auto id = r.vector(2);
  if (!r.ok) return {};
  const auto rest = r.rest;
  // PSK: nothing follows. ECDHE_PSK: an ECPoint<1..255>. DHE_PSK / RSA_PSK: a vector<0..2^16-1>.
  const bool psk = rest.empty();
  const bool ecdhe_psk = !rest.empty() && bytes::octet(rest[0]) == rest.size() - 1;
  const bool vector_psk = rest.size() >= 2 && bytes::load_be(rest.data(), 2) == rest.size() - 2;
  if (!psk && !ecdhe_psk && !vector_psk) return {};
  return identity_text(id);
}

TlsPskIdentity::State TlsPskIdentity::feed(std::span<const std::byte> bytes) {
  if (state_ != State::reading) return state_;
  auto rest = bytes.first(std::min(bytes.size(), max_scanned - scanned_));
  scanned_ += rest.size();
  while (!rest.empty() && state_ == State::reading) {
    if (record_left_ == 0) {
      const std::size_t n = std::min(record_header_size - record_header_have_, rest.size());
      std::copy_n(rest.begin(), n, record_header_ + record_header_have_);
      record_header_have_ += n;
      rest = rest.subspan(n);
      if (record_header_have_ < record_header_size) break;
      record_header_have_ = 0;
      const std::size_t length = bytes::load_be(record_header_ + 3, 2);
      // Only plaintext handshake records carry what we read; anything else ends the search.
      if (bytes::octet(record_header_[0]) != record_handshake || bytes::octet(record_header_[1]) != 3 ||
          length == 0 || length > max_record) {
        give_up();
        break;
      }
      record_left_ = length;
      continue;
    }
    const std::size_t n = std::min(record_left_, rest.size());
    record_left_ -= n;
    on_record_byte_run(rest.first(n));
    rest = rest.subspan(n);
  }
  if (state_ == State::reading && scanned_ >= max_scanned) give_up();
  return state_;
}

void TlsPskIdentity::on_record_byte_run(std::span<const std::byte> run) {
  while (!run.empty() && state_ == State::reading) {
    if (message_header_have_ < message_header_size) {
      const std::size_t n = std::min(message_header_size - message_header_have_, run.size());
      std::copy_n(run.begin(), n, message_header_ + message_header_have_);
      message_header_have_ += n;
      run = run.subspan(n);
      if (message_header_have_ < message_header_size) break;
      message_type_ = static_cast<std::uint8_t>(bytes::octet(message_header_[0]));
      message_left_ = bytes::load_be(message_header_ + 1, 3);
      keep_body_ = message_type_ == client_hello || message_type_ == client_key_exchange;
      if (keep_body_ && message_left_ > max_message) {
        give_up();
        break;
      }
      body_.clear();
      if (keep_body_) body_.reserve(message_left_);
    } else {
      const std::size_t n = std::min(message_left_, run.size());
      if (keep_body_) body_.insert(body_.end(), run.begin(), run.begin() + static_cast<std::ptrdiff_t>(n));
      message_left_ -= n;
      run = run.subspan(n);
    }
    if (message_header_have_ == message_header_size && message_left_ == 0) {
      message_header_have_ = 0;
      on_message(message_type_, body_);
    }
  }
}

void TlsPskIdentity::on_message(std::uint8_t type, std::span<const std::byte> body) {
  if (first_message_ && type != client_hello) {
    give_up();  // a client's first handshake message is its ClientHello
    return;
  }
  first_message_ = false;
  std::string id;
  if (type == client_hello) {
    id = client_hello_psk_identity(body);
    if (id.empty()) return;  // no TLS 1.3 PSK: a TLS 1.2 one names it in its ClientKeyExchange
  } else if (type == client_key_exchange) {
    id = client_key_exchange_psk_identity(body);
    if (id.empty()) {
      give_up();
      return;
    }
  } else {
    return;  // a client Certificate or CertificateVerify: nothing to read
  }
  identity_ = std::move(id);
  state_ = State::found;
  body_ = {};
}

void TlsPskIdentity::give_up() {
  state_ = State::none;
  body_ = {};
}

}  // namespace coapgw::transport
