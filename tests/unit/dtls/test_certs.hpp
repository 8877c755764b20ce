// Test-time PKI: a CA, a server certificate and a client certificate (EC P-256),
// written as PEM files into a fresh temporary directory.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace coapgw::dtls::test {

class TestPki {
 public:
  TestPki() {
    char pattern[] = "/tmp/coapgw-dtls-pki-XXXXXX";
    dir_ = mkdtemp(pattern);
    EVP_PKEY* ca_key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* ca = make_cert("coapgw test CA", ca_key, nullptr, ca_key, true);
    write(ca_key, ca, "ca");
    EVP_PKEY* server_key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* server = make_cert("coapgw.test", server_key, ca, ca_key, false);
    write(server_key, server, "server");
    EVP_PKEY* client_key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* client = make_cert("device-42", client_key, ca, ca_key, false);
    write(client_key, client, "client");
    // A client certificate from a CA the server does not trust.
    EVP_PKEY* rogue_key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* rogue = make_cert("rogue-device", rogue_key, nullptr, rogue_key, false);
    write(rogue_key, rogue, "rogue");
    for (X509* c : {ca, server, client, rogue}) X509_free(c);
    for (EVP_PKEY* k : {ca_key, server_key, client_key, rogue_key}) EVP_PKEY_free(k);
  }
  ~TestPki() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string cert(const std::string& name) const { return dir_ + "/" + name + ".crt"; }
  std::string key(const std::string& name) const { return dir_ + "/" + name + ".key"; }

 private:
  static X509* make_cert(const char* cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, bool is_ca) {
    static long serial = 1;
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer) : name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer != nullptr ? issuer : x, x, nullptr, nullptr, 0);
    auto add = [&](int nid, const char* value) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
      X509_add_ext(x, ext, -1);
      X509_EXTENSION_free(ext);
    };
    add(NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    if (is_ca) add(NID_key_usage, "critical,keyCertSign,cRLSign");
    X509_sign(x, issuer_key, EVP_sha256());
    return x;
  }
  void write(EVP_PKEY* key, X509* cert, const std::string& name) const {
    FILE* f = std::fopen(this->key(name).c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    f = std::fopen(this->cert(name).c_str(), "w");
    PEM_write_X509(f, cert);
    std::fclose(f);
  }
  std::string dir_;
};

}  // namespace coapgw::dtls::test
