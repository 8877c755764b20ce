// JSON page rendering for /v1/sessions; see sessions_page.hpp.
#include "admin/sessions_page.hpp"

#include "common/json.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>

namespace coapgw::admin {

namespace {

std::optional<std::uint64_t> parse_decimal(std::string_view text) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) {
        return c >= '0' && c <= '9';
      }))
    return std::nullopt;
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

PageQueryResult parse_page_query(std::string_view query) {
  PageQuery q;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = param.find('=');
    const std::string_view key = param.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view{} : param.substr(eq + 1);
    if (key == "limit") {
      // Huge values are clamped like any value above the maximum.
      const bool digits = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
        return c >= '0' && c <= '9';
      });
      const auto n = parse_decimal(value);
      if (!digits || (n && *n == 0))
        return {std::nullopt, "limit must be an integer from 1 to 1000"};
      q.limit = (!n || *n > max_page_limit) ? max_page_limit : static_cast<std::size_t>(*n);
    } else if (key == "cursor") {
      if (value.empty()) {
        q.after_id = 0;
      } else if (auto n = parse_decimal(value)) {
        q.after_id = *n;
      } else {
        return {std::nullopt, "cursor must be the decimal next_cursor of a previous page"};
      }
    }
  }
  return {q, {}};
}


std::string render_error(std::string_view message) {
  std::string out = "{\"error\":";
  json::append_string(out, message);
  out += "}\n";
  return out;
}

std::string render_sessions_page(std::vector<SessionInfo> sessions, const PageQuery& query) {
  std::erase_if(sessions, [&](const SessionInfo& s) { return s.id <= query.after_id; });
  std::sort(sessions.begin(), sessions.end(),
            [](const SessionInfo& a, const SessionInfo& b) { return a.id < b.id; });
  sessions.erase(std::unique(sessions.begin(), sessions.end(),
                             [](const SessionInfo& a, const SessionInfo& b) { return a.id == b.id; }),
                 sessions.end());
  const bool more = sessions.size() > query.limit;
  if (more) sessions.resize(query.limit);

  std::string out = "{\"sessions\":[";
  out.reserve(64 + sessions.size() * 320);
  bool first = true;
  for (const auto& s : sessions) {
    if (!first) out.push_back(',');
    first = false;
    json::ObjectWriter o(out);
    o.number("id", static_cast<std::int64_t>(s.id))
        .string("proto", s.proto)
        .string("type", s.type)
        .string("state", s.state)
        .string("remote", s.remote)
        .string("local", s.local)
        .number("ifindex", s.ifindex)
        .string_or_null("identity", s.identity);
    if (!s.tenant.empty()) o.string("tenant", s.tenant);  // the device registry's (dtls.psk.lookup)
    if (!s.cid.empty()) o.string("cid", s.cid);
    o.string("created", json::rfc3339_utc_ms(s.created_unix_ms))
        .string("last_seen", json::rfc3339_utc_ms(s.last_seen_unix_ms))
        .number("created_unix_ms", s.created_unix_ms)
        .number("last_seen_unix_ms", s.last_seen_unix_ms)
        .number("refcount", s.refcount)
        .number("downlinks", s.downlinks)
        .boolean("idle", s.idle)
        .close();
  }
  out += "],\"next_cursor\":";
  if (more && !sessions.empty())
    out += "\"" + std::to_string(sessions.back().id) + "\"";
  else
    out += "null";
  out += "}\n";
  return out;
}

}  // namespace coapgw::admin
