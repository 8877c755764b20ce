// Tests for /v1/sessions paging and JSON rendering (no server involved).
#include "admin/sessions_page.hpp"
#include "common/json.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace coapgw::admin {
namespace {

TEST(PageQuery, DefaultsAndValues) {
  auto r = parse_page_query("");
  ASSERT_TRUE(r.query);
  EXPECT_EQ(r.query->limit, default_page_limit);
  EXPECT_EQ(r.query->after_id, 0u);

  r = parse_page_query("limit=7&cursor=42&other=x");
  ASSERT_TRUE(r.query);
  EXPECT_EQ(r.query->limit, 7u);
  EXPECT_EQ(r.query->after_id, 42u);

  r = parse_page_query("limit=5000");
  ASSERT_TRUE(r.query);
  EXPECT_EQ(r.query->limit, max_page_limit);
  r = parse_page_query("limit=99999999999999999999999");
  ASSERT_TRUE(r.query);
  EXPECT_EQ(r.query->limit, max_page_limit);

  r = parse_page_query("cursor=");
  ASSERT_TRUE(r.query);
  EXPECT_EQ(r.query->after_id, 0u);
}

TEST(PageQuery, InvalidValuesAreErrors) {
  for (const char* q : {"limit=0", "limit=", "limit=-1", "limit=abc", "limit=1x", "cursor=abc",
                        "cursor=-5", "cursor=99999999999999999999999", "limit"}) {
    const auto r = parse_page_query(q);
    EXPECT_FALSE(r.query) << q;
    EXPECT_FALSE(r.error.empty()) << q;
  }
}

TEST(Json, StringsAreEscaped) {
  std::string out;
  json::append_string(out, std::string("a\"b\\c\n\t\x01\x7f", 9));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\"");
  out.clear();
  json::append_string(out, "caf\xc3\xa9 \xe2\x82\xac");  // valid UTF-8 passes through
  EXPECT_EQ(out, "\"caf\xc3\xa9 \xe2\x82\xac\"");
  out.clear();
  json::append_string(out, "x\xff\xc3y\xed\xa0\x80");  // invalid bytes, truncated seq, surrogate
  EXPECT_EQ(out, "\"x\\ufffd\\ufffdy\\ufffd\\ufffd\\ufffd\"");
}

TEST(Json, Rfc3339) {
  EXPECT_EQ(json::rfc3339_utc_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(json::rfc3339_utc_ms(1714564800123), "2024-05-01T12:00:00.123Z");
  EXPECT_EQ(json::rfc3339_utc_ms(-1), "1969-12-31T23:59:59.999Z");
}

SessionInfo session(std::uint64_t id, std::string identity = "dev") {
  SessionInfo s;
  s.id = id;
  s.proto = "dtls";
  s.type = "server";
  s.state = "established";
  s.remote = "127.0.0.1:40000";
  s.local = "127.0.0.1:5684";
  s.ifindex = 1;
  s.identity = std::move(identity);
  s.created_unix_ms = 1000;
  s.last_seen_unix_ms = 2000;
  s.refcount = 0;
  s.idle = true;
  return s;
}

TEST(SessionsPage, NextCursorOnlyWhenMoreExist) {
  // The extra (limit + 1)th entry means another page exists.
  std::string page = render_sessions_page({session(5), session(3), session(9)}, {0, 2});
  EXPECT_NE(page.find("\"id\":3,"), std::string::npos);
  EXPECT_NE(page.find("\"id\":5,"), std::string::npos);
  EXPECT_EQ(page.find("\"id\":9,"), std::string::npos);
  EXPECT_NE(page.find("\"next_cursor\":\"5\""), std::string::npos) << page;

  page = render_sessions_page({session(7), session(9)}, {5, 2});
  EXPECT_NE(page.find("\"next_cursor\":null"), std::string::npos) << page;

  // Ids at or below the cursor are dropped even if the lister returns them.
  page = render_sessions_page({session(1), session(5), session(6)}, {5, 10});
  EXPECT_EQ(page.find("\"id\":1,"), std::string::npos);
  EXPECT_EQ(page.find("\"id\":5,"), std::string::npos);
  EXPECT_NE(page.find("\"id\":6,"), std::string::npos);

  page = render_sessions_page({}, {0, 10});
  EXPECT_EQ(page, "{\"sessions\":[],\"next_cursor\":null}\n");
}

TEST(SessionsPage, AllFieldsRendered) {
  const std::string page = render_sessions_page({session(12)}, {0, 10});
  EXPECT_EQ(page,
            "{\"sessions\":[{\"id\":12,\"proto\":\"dtls\",\"type\":\"server\",\"state\":"
            "\"established\",\"remote\":\"127.0.0.1:40000\",\"local\":\"127.0.0.1:5684\","
            "\"ifindex\":1,\"identity\":\"dev\",\"created\":\"1970-01-01T00:00:01.000Z\","
            "\"last_seen\":\"1970-01-01T00:00:02.000Z\",\"created_unix_ms\":1000,"
            "\"last_seen_unix_ms\":2000,\"refcount\":0,\"downlinks\":0,\"idle\":true}],\"next_cursor\":null}\n");
  EXPECT_NE(render_sessions_page({session(1, "")}, {0, 1}).find("\"identity\":null"),
            std::string::npos);
}

TEST(SessionsPage, HostileIdentitiesStillGiveValidJson) {
  const std::string page = render_sessions_page(
      {session(1, std::string("a\"}],\x00\xff\n\\", 9)), session(2, "\xe2\x82"),
       session(3, "\x1b[31mred")},
      {0, 10});
  const auto path = std::filesystem::temp_directory_path() /
                    ("coapgw_admin_json_" + std::to_string(::getpid()) + ".json");
  std::ofstream(path) << page;
  const std::string cmd = std::string(COAPGW_SYSTEM_PYTHON) +
                          " -c 'import json,sys; d=json.load(open(sys.argv[1])); "
                          "print(len(d[\"sessions\"]), d[\"sessions\"][0][\"identity\"][:3])' " +
                          path.string() + " 2>&1";
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[512];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int rc = ::pclose(pipe);
  std::filesystem::remove(path);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "3 a\"}\n");
}

}  // namespace
}  // namespace coapgw::admin
