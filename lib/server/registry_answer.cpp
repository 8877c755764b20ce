#include "server/registry_answer.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <charconv>
#include <string>

#include "upstream/forward.hpp"

namespace coapgw::server {

namespace {

std::optional<std::string> decode_hex(const std::string& text) {
  if (text.size() % 2 != 0) return std::nullopt;
  std::string out(text.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    unsigned value = 0;
    const char* first = text.data() + 2 * i;
    // from_chars alone would take a sign or a 0x; two hex digits are asked for explicitly.
    if (!std::isxdigit(static_cast<unsigned char>(first[0])) || !std::isxdigit(static_cast<unsigned char>(first[1])) ||
        std::from_chars(first, first + 2, value, 16).ec != std::errc{})
      return std::nullopt;
    out[i] = static_cast<char>(value);
  }
  return out;
}

}  // namespace

std::optional<dtls::RegistryEntry> parse_registry_answer(std::uint8_t code, std::span<const std::byte> body) {
  using upstream::coap_code;
  if (code == coap_code(4, 4)) return dtls::RegistryEntry{};  // known = false
  if (code != coap_code(2, 5)) return std::nullopt;
  const auto* text = reinterpret_cast<const char*>(body.data());
  const nlohmann::json doc = nlohmann::json::parse(text, text + body.size(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
  const auto key = doc.find("key");
  const auto key_hex = doc.find("key_hex");
  if ((key == doc.end()) == (key_hex == doc.end())) return std::nullopt;  // exactly one of them
  const auto& given = key != doc.end() ? *key : *key_hex;
  if (!given.is_string()) return std::nullopt;
  dtls::RegistryEntry entry;
  entry.known = true;
  if (key != doc.end()) {
    entry.key = SecretString(given.get_ref<const std::string&>());
  } else {
    auto bytes = decode_hex(given.get_ref<const std::string&>());
    if (!bytes) return std::nullopt;
    entry.key = SecretString(std::move(*bytes));
  }
  if (entry.key.empty() || entry.key.size() > max_registry_key_bytes) return std::nullopt;
  if (auto tenant = doc.find("tenant"); tenant != doc.end() && !tenant->is_null()) {
    if (!tenant->is_string() || tenant->get_ref<const std::string&>().size() > max_registry_tenant_bytes)
      return std::nullopt;
    entry.tenant = tenant->get<std::string>();
  }
  if (auto banned = doc.find("banned"); banned != doc.end() && !banned->is_null()) {
    if (!banned->is_boolean()) return std::nullopt;
    entry.banned = banned->get<bool>();
  }
  return entry;
}

}  // namespace coapgw::server
