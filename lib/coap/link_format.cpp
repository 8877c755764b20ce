// RFC 6690 §2 grammar: link-value = "<" URI-Reference ">" *( ";" link-param ), joined by ",".
#include "coap/link_format.hpp"

#include <string_view>

#include "common/url.hpp"

namespace coapgw::coap {
namespace {

// RFC 6690 ptoken characters: a value made only of these may go unquoted.
bool is_ptoken_char(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'()*+-./:<=>?@[]^_`{|}~").find(static_cast<char>(c)) !=
         std::string_view::npos;
}

bool is_ptoken(std::string_view v) {
  if (v.empty()) return false;
  for (char c : v)
    if (!is_ptoken_char(static_cast<unsigned char>(c))) return false;
  return true;
}

// These carry relation types or free text and are conventionally always quoted.
bool always_quoted(std::string_view name) {
  return name == "rt" || name == "if" || name == "title" || name == "anchor";
}

void append_target(std::string& out, std::string_view target) {
  out.push_back('<');
  out += url::percent_encode_link_target(target);
  out.push_back('>');
}

void append_quoted(std::string& out, std::string_view value) {
  out.push_back('"');
  for (char c : value) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

}  // namespace

std::string write_link_format(std::span<const Link> links) {
  std::string out;
  bool first = true;
  for (const Link& link : links) {
    if (!first) out.push_back(',');
    first = false;
    append_target(out, link.target);
    for (const auto& [name, value] : link.attributes) {
      out.push_back(';');
      out += name;
      if (value.empty()) continue;
      out.push_back('=');
      if (!always_quoted(name) && is_ptoken(value))
        out += value;
      else
        append_quoted(out, value);
    }
  }
  return out;
}

}  // namespace coapgw::coap
