// coapgw::api::TokenSet — the bearer tokens of the backend API (api.tokens,
// api.tokens_file) and the one check of an Authorization header against them.
//
// Tokens are kept as SHA-256 digests and every check compares the digest of
// the presented token with every stored one using CRYPTO_memcmp, without an
// early exit, so the time taken says nothing about which token, how many
// bytes of it, or how long a token is. The check never looks at the device.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace coapgw::api {

class TokenSet {
 public:
  TokenSet() = default;
  explicit TokenSet(const std::vector<config::ApiToken>& tokens);

  // The name of the token that `authorization` ("Bearer <token>", scheme
  // case-insensitive, RFC 6750 §2.1) carries; nullopt for a missing,
  // malformed or unknown one.
  std::optional<std::string> check(std::string_view authorization) const;

  std::size_t size() const { return entries_.size(); }

 private:
  using Digest = std::array<unsigned char, 32>;
  struct Entry {
    std::string name;
    Digest digest;
  };
  std::vector<Entry> entries_;
};

}  // namespace coapgw::api
