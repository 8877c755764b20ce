#include "server/request_target.hpp"

#include <algorithm>
#include <string>

#include "coap/option.hpp"

namespace coapgw::server {
namespace {

// An IP literal of Uri-Host, or nullopt for a registered name. A value that looks like an IPv6
// literal (has ':') but does not parse cannot be a name either, so it names no one: the unspecified
// address stands for it and never matches.
std::optional<Address> host_literal(std::string_view host) {
  if (host.find(':') != std::string_view::npos) {
    std::string text(host);
    if (!text.starts_with('[')) text = "[" + text + "]";
    auto a = Address::parse(text + ":0");
    return a ? *a : Address::v6({}, 0);
  }
  const bool dotted = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.';
  });
  if (!dotted) return std::nullopt;
  return Address::parse(std::string(host) + ":0");  // "1.2.3" is a (strange) name: accepted
}

bool same_ip(const Address& a, const Address& b) {
  return a.family() == b.family() && std::equal(a.ip_bytes(), a.ip_bytes() + a.ip_size(), b.ip_bytes());
}

}  // namespace

std::optional<Refusal> check_request_target(const coap::MessageView& m, const Address& local) {
  if (m.find(coap::option::proxy_uri) != nullptr || m.find(coap::option::proxy_scheme) != nullptr)
    return Refusal{coap::code::proxying_not_supported, metrics::BadReason::proxy_unsupported, "forward proxying is not supported"};
  if (auto* host = m.find(coap::option::uri_host)) {
    auto literal = host_literal(coap::as_string(host->value));
    const bool known = local.family() != Address::Family::none && !local.is_unspecified();
    if (literal && known && !same_ip(*literal, local))
      return Refusal{coap::code::not_found, metrics::BadReason::wrong_authority, "Uri-Host names another host"};
  }
  if (auto* port = m.find(coap::option::uri_port)) {
    if (local.port() != 0 && coap::decode_uint(port->value) != local.port())
      return Refusal{coap::code::not_found, metrics::BadReason::wrong_authority, "Uri-Port names another port"};
  }
  if (coap::has_unsafe_path_segment(m))
    return Refusal{coap::code::bad_request, metrics::BadReason::bad_path, "dot-segment in Uri-Path"};
  return std::nullopt;
}

void copy_conditionals(const coap::MessageView& m, upstream::ForwardRequest& request) {
  for (const coap::OptionView& o : m.option_list()) {
    if (o.number == coap::option::if_match) request.if_match.emplace_back(o.value.begin(), o.value.end());
    else if (o.number == coap::option::if_none_match) request.if_none_match = true;
    else if (o.number == coap::option::etag) request.etags.emplace_back(o.value.begin(), o.value.end());
  }
}

}  // namespace coapgw::server
