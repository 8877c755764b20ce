// coapgw::dtls::detail — the OpenSSL side of the module: the datagram BIO and
// the callbacks OpenSSL calls back into ServerContext/Engine. Internal header;
// the only one besides the .cpp files that includes OpenSSL.
#pragma once

#include <openssl/bio.h>
#include <openssl/ssl.h>

namespace coapgw::dtls::detail {

// BIO method shared by every SSL object of the process: reads hand OpenSSL the
// DatagramPipe's current input as one packet, each write becomes one datagram.
const BIO_METHOD* datagram_bio_method();
BIO* new_datagram_bio(struct DatagramPipe* pipe);

struct Callbacks {
  static unsigned int psk_server(SSL* ssl, const char* identity, unsigned char* psk,
                                 unsigned int max_psk_len);
  static unsigned int psk_client(SSL* ssl, const char* hint, char* identity, unsigned int max_identity_len,
                                 unsigned char* psk, unsigned int max_psk_len);
  static int cookie_generate(SSL* ssl, unsigned char* cookie, unsigned int* length);
  static int cookie_verify(SSL* ssl, const unsigned char* cookie, unsigned int length);
  static void message(int write_p, int version, int content_type, const void* buf, size_t len,
                      SSL* ssl, void* arg);
  static void info(const SSL* ssl, int where, int ret);
  static unsigned int dtls_timer(SSL* ssl, unsigned int previous_us);
};

}  // namespace coapgw::dtls::detail
