// /v1/sessions paging: the query string in, the JSON page out. Pure functions,
// no I/O, so the wire format is tested without a server.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "admin/session_info.hpp"

namespace coapgw::admin {

inline constexpr std::size_t default_page_limit = 100;
inline constexpr std::size_t max_page_limit = 1000;

struct PageQuery {
  std::uint64_t after_id = 0;  // the cursor: last id of the previous page
  std::size_t limit = default_page_limit;
};

struct PageQueryResult {
  std::optional<PageQuery> query;
  std::string error;  // set when query is empty
};

// Parses "limit=10&cursor=123" (the part after '?'). limit must be a decimal
// integer >= 1 and is clamped to max_page_limit; cursor is a decimal uint64
// (empty = first page). Unknown parameters are ignored.
PageQueryResult parse_page_query(std::string_view query);

// Renders {"sessions":[...],"next_cursor":"123"|null}. `sessions` may hold
// up to query.limit + 1 entries: the extra one only tells that another page
// exists. Entries with id <= query.after_id are dropped so that a misbehaving
// lister cannot make a client page in circles.
std::string render_sessions_page(std::vector<SessionInfo> sessions, const PageQuery& query);

// {"error":"..."}
std::string render_error(std::string_view message);

}  // namespace coapgw::admin
