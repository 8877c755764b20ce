#include "common/openssl_error.hpp"

#include <openssl/err.h>

namespace coapgw {

std::string openssl_error(std::string_view what) {
  std::string text(what);
  if (const unsigned long code = ERR_peek_last_error(); code != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    text += ": ";
    text += buffer;
  }
  ERR_clear_error();
  return text;
}

}  // namespace coapgw
