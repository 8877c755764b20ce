// TLS over memory BIOs for the stream driver; see tls_filter.hpp.
#include "transport/tls_filter.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>

namespace coapgw::transport {

TlsFilter::TlsFilter(ssl_ctx_st* context) {
  ssl_ = SSL_new(context);
  if (ssl_ == nullptr) {
    fail();
    return;
  }
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (in == nullptr || out == nullptr) {
    BIO_free(in);
    BIO_free(out);
    fail();
    return;
  }
  BIO_set_mem_eof_return(in, -1);  // an empty input BIO means "more to come", not end of stream
  SSL_set_bio(ssl_, in, out);
  SSL_set_accept_state(ssl_);
}

TlsFilter::~TlsFilter() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void TlsFilter::fail() {
  status_ = Status::failed;
  const unsigned long e = ERR_peek_last_error();
  if (e != 0 && error_.empty()) {
    std::array<char, 256> text{};
    ERR_error_string_n(e, text.data(), text.size());
    error_ = text.data();
  }
  ERR_clear_error();
}

void TlsFilter::drain(std::vector<std::byte>& out) {
  if (ssl_ == nullptr) return;
  BIO* wbio = SSL_get_wbio(ssl_);
  std::array<std::byte, 16384> chunk;
  for (;;) {
    const int n = BIO_read(wbio, chunk.data(), static_cast<int>(chunk.size()));
    if (n <= 0) return;
    out.insert(out.end(), chunk.begin(), chunk.begin() + n);
  }
}

TlsFilter::Status TlsFilter::on_ciphertext(std::span<const std::byte> in, std::vector<std::byte>& plain,
                                           std::vector<std::byte>& out) {
  if (status_ == Status::failed || status_ == Status::closed) return status_;
  if (!in.empty() && BIO_write(SSL_get_rbio(ssl_), in.data(), static_cast<int>(in.size())) <= 0) {
    fail();
    return status_;
  }
  if (status_ == Status::handshaking) {
    const int r = SSL_do_handshake(ssl_);
    if (r == 1) {
      status_ = Status::open;
    } else {
      const int err = SSL_get_error(ssl_, r);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
        fail();
        drain(out);  // the alert, if OpenSSL wrote one
        return status_;
      }
    }
  }
  if (status_ == Status::open) {
    std::array<std::byte, 16384> chunk;
    for (;;) {
      const int n = SSL_read(ssl_, chunk.data(), static_cast<int>(chunk.size()));
      if (n > 0) {
        plain.insert(plain.end(), chunk.begin(), chunk.begin() + n);
        continue;
      }
      const int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
      if (err == SSL_ERROR_ZERO_RETURN) status_ = Status::closed;
      else fail();
      break;
    }
  }
  drain(out);  // handshake flights, TLS 1.3 session tickets, key updates
  return status_;
}

bool TlsFilter::write(std::span<const std::byte> plain, std::vector<std::byte>& out) {
  if (status_ != Status::open || shut_) return false;
  std::size_t written = 0;
  while (written < plain.size()) {
    const int n = SSL_write(ssl_, plain.data() + written, static_cast<int>(plain.size() - written));
    if (n <= 0) {
      fail();
      return false;
    }
    written += static_cast<std::size_t>(n);
  }
  drain(out);
  return true;
}

void TlsFilter::shutdown(std::vector<std::byte>& out) {
  if (shut_ || ssl_ == nullptr || status_ == Status::handshaking || status_ == Status::failed) return;
  shut_ = true;
  SSL_shutdown(ssl_);
  ERR_clear_error();
  drain(out);
}

}  // namespace coapgw::transport
