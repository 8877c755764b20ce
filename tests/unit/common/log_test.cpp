// The text log escaper: nothing a peer puts in an identity or a path can end a line or fake one.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <string>

#include "common/log.hpp"

namespace coapgw::log {
namespace {

TEST(LogEscape, PrintableAsciiAndUtf8PassUnchanged) {
  EXPECT_EQ(escaped("demo-device /telemetry?x=1"), "demo-device /telemetry?x=1");
  EXPECT_EQ(escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(escaped(""), "");
}

TEST(LogEscape, LineBreaksAndControlsAreEscaped) {
  EXPECT_EQ(escaped("evil\nINFO fake"), "evil\\nINFO fake");
  EXPECT_EQ(escaped("a\rb\tc"), "a\\rb\\tc");
  EXPECT_EQ(escaped(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(escaped("\x1b[31mred"), "\\x1b[31mred");  // terminal escape sequences
  EXPECT_EQ(escaped("\x7f"), "\\x7f");
  EXPECT_EQ(escaped("back\\slash"), "back\\\\slash");  // so "\\n" in the input is not a fake escape
}

TEST(LogEscape, InvalidUtf8AndUnicodeLineBreaksAreEscapedBytewise) {
  EXPECT_EQ(escaped("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(escaped("\xc3"), "\\xc3");              // truncated sequence
  EXPECT_EQ(escaped("\xc0\xaf"), "\\xc0\\xaf");     // overlong '/'
  EXPECT_EQ(escaped("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a UTF-16 surrogate
  EXPECT_EQ(escaped("\xc2\x85"), "\\xc2\\x85");     // U+0085 NEXT LINE (C1)
  EXPECT_EQ(escaped("a\xe2\x80\xa8" "b"), "a\\xe2\\x80\\xa8b");  // U+2028 LINE SEPARATOR
}

TEST(LogEscape, OutputIsAlwaysOnePrintableLine) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  auto out = escaped(all);
  for (unsigned char c : out) {
    EXPECT_GE(c, 0x20);
    EXPECT_LT(c, 0x7f);  // every byte >= 0x80 in `all` is invalid UTF-8 on its own
  }
}

// A text log line written by log::write with a peer-chosen identity in it stays one line.
TEST(LogEscape, WriteEscapesTextLines) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  int saved = ::dup(STDERR_FILENO);
  std::fflush(stderr);
  ::dup2(fds[1], STDERR_FILENO);
  configure(Level::info, Format::text);
  info("dtls: unknown PSK identity 'evil\nINFO forged' from 127.0.0.1:1");
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(fds[1]);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.find('\n'), got.size() - 1) << got;
  EXPECT_NE(got.find("'evil\\nINFO forged'"), std::string::npos) << got;
}

}  // namespace
}  // namespace coapgw::log
