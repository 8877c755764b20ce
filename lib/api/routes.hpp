// coapgw::api routes — which endpoint of DESIGN "Downlink" an HTTP method
// and target name. Pure; the {identity} segment is returned still encoded.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace coapgw::api {

enum class Endpoint : std::uint8_t {
  device_request,      // POST   /v1/devices/{identity}/requests
  request_state,       // GET    /v1/devices/{identity}/requests/{id}
  request_cancel,      // DELETE /v1/devices/{identity}/requests/{id}
  observe,             // POST   /v1/devices/{identity}/observations
  observe_cancel,      // DELETE /v1/devices/{identity}/observations/{id}
  group_request,       // POST   /v1/groups/requests
  not_found,           // no such path (404)
  method_not_allowed,  // path known, method not (405 with `allow`)
};

struct RouteMatch {
  Endpoint endpoint = Endpoint::not_found;
  std::string_view device;  // encoded {identity} segment
  std::uint64_t id = 0;     // {id}; an id that is not a decimal number is not_found
  std::string_view allow;   // method_not_allowed: the Allow header value
};

// `target` is the HTTP request target; a query string is ignored.
RouteMatch match_route(std::string_view method, std::string_view target);

}  // namespace coapgw::api
