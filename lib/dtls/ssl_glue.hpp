// coapgw::dtls::detail — the OpenSSL side of the module: the datagram BIO and
// the callbacks OpenSSL calls back into ServerContext/Engine. Internal header;
// the only one besides the .cpp files that includes OpenSSL.
#pragma once

#include <openssl/bio.h>
#include <openssl/ssl.h>

namespace coapgw::dtls::detail {

struct SuiteParams;
struct TrafficKeys;

// The epoch-1 traffic keys of `ssl`'s session (master secret and randoms through the TLS 1.2 key
// block), split by direction for the role; false when the suite is not one the lean layer knows
// or the master secret is not there yet. The keys are secret: the caller wipes them.
bool export_traffic_keys(SSL* ssl, bool server, const SuiteParams** suite, TrafficKeys* read, TrafficKeys* write);

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
  // The connection_id extension (RFC 9146 3), as an OpenSSL custom extension.
  static int cid_add(SSL* ssl, unsigned int type, unsigned int context, const unsigned char** out, size_t* out_len,
                     X509* x, size_t chain_index, int* alert, void* arg);
  static int cid_parse(SSL* ssl, unsigned int type, unsigned int context, const unsigned char* in, size_t in_len,
                       X509* x, size_t chain_index, int* alert, void* arg);
  // Registers both on `ctx`; false when OpenSSL refuses.
  static bool add_cid_extension(SSL_CTX* ctx);
  // RFC 5077 session tickets (ticket_glue.cpp): the key callback seals and opens tickets with the
  // ServerContext's TicketKeys; the generate/decrypt pair puts the credentials in the ticket and
  // checks them against the current configuration before a ticket may resume.
  static int ticket_key(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                        EVP_MAC_CTX* mac, int encrypt);
  static int ticket_generated(SSL* ssl, void* arg);
  static SSL_TICKET_RETURN ticket_decrypted(SSL* ssl, SSL_SESSION* session, const unsigned char* name,
                                            size_t name_length, SSL_TICKET_STATUS status, void* arg);
  // Turns tickets on for a server context; false when OpenSSL refuses.
  static bool enable_tickets(SSL_CTX* ctx, long lifetime_seconds);
};

}  // namespace coapgw::dtls::detail
