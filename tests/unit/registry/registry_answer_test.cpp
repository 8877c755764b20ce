#include "server/registry_answer.hpp"

#include <gtest/gtest.h>

#include <string>

#include "upstream/forward.hpp"

namespace coapgw::server {
namespace {

using upstream::coap_code;

std::optional<dtls::RegistryEntry> parse(std::uint8_t code, const std::string& body) {
  return parse_registry_answer(code, std::span(reinterpret_cast<const std::byte*>(body.data()), body.size()));
}

TEST(RegistryAnswer, KeyTenantAndBan) {
  auto e = parse(coap_code(2, 5), R"({"key":"secret","tenant":"acme","banned":false})");
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->known);
  EXPECT_EQ(std::string(e->key), "secret");
  EXPECT_EQ(e->tenant, "acme");
  EXPECT_TRUE(e->usable());
  e = parse(coap_code(2, 5), R"({"key_hex":"00ff10","banned":true})");
  ASSERT_TRUE(e);
  EXPECT_EQ(std::string(e->key), std::string("\x00\xff\x10", 3));
  EXPECT_TRUE(e->banned);
  EXPECT_FALSE(e->usable());
}

TEST(RegistryAnswer, NotFoundIsAnUnknownIdentity) {
  auto e = parse(coap_code(4, 4), "whatever");
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->known);
}

TEST(RegistryAnswer, AnythingElseIsNotWellFormed) {
  for (const char* body : {"", "not json", "[]", "{}", R"({"key":""})", R"({"key":5})", R"({"key_hex":"abc"})",
                           R"({"key_hex":"zz"})", R"({"key_hex":"+1"})", R"({"key":"a","key_hex":"61"})",
                           R"({"key":"a","banned":"no"})", R"({"key":"a","tenant":7})"}) {
    EXPECT_FALSE(parse(coap_code(2, 5), body)) << body;
  }
  EXPECT_FALSE(parse(coap_code(2, 5), R"({"key":")" + std::string(max_registry_key_bytes + 1, 'k') + "\"}"));
  EXPECT_FALSE(parse(coap_code(5, 0), R"({"key":"a"})"));
  EXPECT_FALSE(parse(coap_code(4, 3), R"({"key":"a"})"));
}

}  // namespace
}  // namespace coapgw::server
