// Bearer token check; see tokens.hpp.
#include "api/tokens.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cctype>

#include "common/secret.hpp"

namespace coapgw::api {

namespace {

std::array<unsigned char, 32> digest_of(std::string_view text) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  // SHA-256 cannot fail on a valid digest type; a zero digest matches nothing real.
  if (EVP_Digest(text.data(), text.size(), out.data(), &len, EVP_sha256(), nullptr) != 1) out.fill(0);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

}  // namespace

TokenSet::TokenSet(const std::vector<config::ApiToken>& tokens) {
  entries_.reserve(tokens.size());
  for (const auto& t : tokens) entries_.push_back({t.name, digest_of(t.token.view())});
}

std::optional<std::string> TokenSet::check(std::string_view authorization) const {
  constexpr std::string_view scheme = "bearer ";
  if (authorization.size() <= scheme.size() || !iequals(authorization.substr(0, scheme.size()), scheme))
    return std::nullopt;
  std::string_view token = authorization.substr(scheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  auto presented = digest_of(token);
  const Entry* match = nullptr;
  for (const auto& e : entries_) {
    // No early exit: every token is compared whatever matched before.
    const bool equal = CRYPTO_memcmp(presented.data(), e.digest.data(), presented.size()) == 0;
    if (equal && match == nullptr) match = &e;
  }
  secure_wipe(presented.data(), presented.size());
  if (match == nullptr) return std::nullopt;
  return match->name;
}

}  // namespace coapgw::api
