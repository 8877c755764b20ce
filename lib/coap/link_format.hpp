// coapgw::coap link-format — the RFC 6690 writer behind /.well-known/core.
//
// Owns the text form only; which resources to list is the gateway's business.
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

namespace coapgw::coap {

struct Link {
  std::string target;  // URI-reference, e.g. "/sensors/temp"
  std::vector<std::pair<std::string, std::string>> attributes;
};

// `<target>;name=value,...`. An attribute with an empty value is written as bare `;name`. Values
// are quoted unless they are a plain token or number per RFC 6690 (rt, if, title, anchor always
// quoted; ct, sz bare when they are plain); `"` and `\` are escaped inside quotes. Characters that
// cannot appear inside <...> (controls, space, '<', '>', '"', non-ASCII) are percent-encoded.
std::string write_link_format(std::span<const Link> links);

}  // namespace coapgw::coap
