// Endpoint matching; see routes.hpp.
#include "api/routes.hpp"

#include <charconv>
#include <vector>

namespace coapgw::api {

namespace {

std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path.front() != '/') return out;
  path.remove_prefix(1);
  while (true) {
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool parse_id(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && p == text.data() + text.size();
}

RouteMatch only(std::string_view method, std::string_view allowed, Endpoint endpoint, RouteMatch m) {
  if (method != allowed) return {Endpoint::method_not_allowed, {}, 0, allowed};
  m.endpoint = endpoint;
  return m;
}

}  // namespace

RouteMatch match_route(std::string_view method, std::string_view target) {
  const auto path = target.substr(0, target.find('?'));
  const auto s = segments(path);
  RouteMatch m;
  if (s.size() == 3 && s[0] == "v1" && s[1] == "groups" && s[2] == "requests")
    return only(method, "POST", Endpoint::group_request, m);
  if (s.size() < 4 || s[0] != "v1" || s[1] != "devices" || s[2].empty()) return m;
  m.device = s[2];
  const bool requests = s[3] == "requests", observations = s[3] == "observations";
  if (!requests && !observations) return {};
  if (s.size() == 4)
    return only(method, "POST", requests ? Endpoint::device_request : Endpoint::observe, m);
  if (s.size() != 5 || !parse_id(s[4], m.id)) return {};
  if (observations) return only(method, "DELETE", Endpoint::observe_cancel, m);
  if (method == "GET") return only(method, "GET", Endpoint::request_state, m);
  if (method == "DELETE") return only(method, "DELETE", Endpoint::request_cancel, m);
  return {Endpoint::method_not_allowed, {}, 0, "GET, DELETE"};
}

}  // namespace coapgw::api
