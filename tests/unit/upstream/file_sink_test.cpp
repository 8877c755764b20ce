#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/json.hpp"
#include "upstream/file_record.hpp"
#include "upstream/file_sink.hpp"
#include "test_util.hpp"

namespace coapgw::upstream {
namespace {

using test::bytes;

std::vector<std::string> read_lines(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

ForwardRequest sample_request() {
  ForwardRequest r;
  r.method = "POST";
  r.path = "/telemetry/x";
  r.query = "a=1&b=2";
  r.content_format = 0;
  r.payload = bytes("temp=21.5 \"quoted\"\n\\ tab\t");
  r.identity = "demo-device";
  r.remote = "127.0.0.1:40000";
  r.session_id = 7;
  return r;
}

TEST(FileRecord, Utf8Validation) {
  EXPECT_TRUE(json::is_valid_utf8(bytes("")));
  EXPECT_TRUE(json::is_valid_utf8(bytes("plain ascii")));
  EXPECT_TRUE(json::is_valid_utf8(bytes("gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x98\x80")));
  EXPECT_FALSE(json::is_valid_utf8(bytes("\xFF")));
  EXPECT_FALSE(json::is_valid_utf8(bytes("\xC3")));              // truncated
  EXPECT_FALSE(json::is_valid_utf8(bytes("\xC0\xAF")));          // overlong
  EXPECT_FALSE(json::is_valid_utf8(bytes("\xE0\x80\xAF")));      // overlong
  EXPECT_FALSE(json::is_valid_utf8(bytes("\xED\xA0\x80")));      // surrogate
  EXPECT_FALSE(json::is_valid_utf8(bytes("\xF4\x90\x80\x80")));  // > U+10FFFF
}

TEST(FileRecord, Base64) {
  EXPECT_EQ(base64_encode(bytes("")), "");
  EXPECT_EQ(base64_encode(bytes("f")), "Zg==");
  EXPECT_EQ(base64_encode(bytes("fo")), "Zm8=");
  EXPECT_EQ(base64_encode(bytes("foo")), "Zm9v");
  EXPECT_EQ(base64_encode(bytes("foobar")), "Zm9vYmFy");
  EXPECT_EQ(base64_encode(bytes(std::string("\xff\x00\x80", 3))), "/wCA");
  // Past the encoder's 3 MiB chunk: the chunks join with no padding or break between them.
  const std::vector<std::byte> zeros(3 * (std::size_t{1} << 20) + 1);
  const std::string long_text = base64_encode(zeros);
  EXPECT_EQ(long_text.size(), 4 * (std::size_t{1} << 20) + 4);
  EXPECT_EQ(long_text.find_first_not_of('A'), long_text.size() - 2);
  EXPECT_TRUE(long_text.ends_with("AA=="));
}

TEST(FileRecord, TimestampIsRfc3339UtcWithMilliseconds) {
  std::chrono::system_clock::time_point t{std::chrono::milliseconds(1700000000123)};
  EXPECT_EQ(rfc3339_utc_ms(t), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(rfc3339_utc_ms(std::chrono::system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
}

TEST(FileRecord, LineHasEveryFieldAndParsesBack) {
  std::chrono::system_clock::time_point t{std::chrono::milliseconds(1700000000123)};
  const std::string line = format_file_record(sample_request(), t);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // escaping kept it one line
  auto obj = test::parse_flat_json(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(obj) << line;
  EXPECT_EQ((*obj)["ts"].value, "2023-11-14T22:13:20.123Z");
  EXPECT_EQ((*obj)["identity"].value, "demo-device");
  EXPECT_EQ((*obj)["session"].value, "7");
  EXPECT_FALSE((*obj)["session"].is_string);
  EXPECT_EQ((*obj)["remote"].value, "127.0.0.1:40000");
  EXPECT_EQ((*obj)["method"].value, "POST");
  EXPECT_EQ((*obj)["path"].value, "/telemetry/x");
  EXPECT_EQ((*obj)["query"].value, "a=1&b=2");
  EXPECT_EQ((*obj)["content_format"].value, "0");
  EXPECT_EQ((*obj)["payload"].value, "temp=21.5 \"quoted\"\n\\ tab\t");
  EXPECT_EQ(obj->count("payload_b64"), 0u);
}

TEST(FileRecord, EmptyIdentityAndMissingContentFormat) {
  ForwardRequest r = sample_request();
  r.identity.clear();
  r.content_format.reset();
  r.payload = bytes(std::string("\x01\x1f", 2));
  const std::string line = format_file_record(r, std::chrono::system_clock::now());
  auto obj = test::parse_flat_json(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(obj) << line;
  EXPECT_TRUE((*obj)["identity"].is_string);
  EXPECT_EQ((*obj)["identity"].value, "");
  EXPECT_EQ((*obj)["content_format"].value, "null");
  EXPECT_EQ((*obj)["payload"].value, std::string("\x01\x1f", 2));
}

class FileSinkTest : public ::testing::Test {
 protected:
  ForwardResponse forward(FileSink& sink, ForwardRequest r) {
    test::Slot slot;
    sink.forward(std::move(r), slot.done());
    EXPECT_EQ(slot.calls, 0) << "done must not run inside forward()";
    EXPECT_TRUE(test::run_until(io_, [&] { return slot.response.has_value(); }));
    EXPECT_EQ(slot.calls, 1);
    return slot.response.value_or(ForwardResponse{});
  }
  boost::asio::io_context io_;
  test::TempDir dir_;
};

TEST_F(FileSinkTest, WritesUtf8AndBinaryPayloads) {
  const auto path = dir_.path / "telemetry.jsonl";
  FileSink sink(io_, path.string());

  auto r1 = forward(sink, sample_request());
  EXPECT_EQ(r1.code, coap_code(2, 1));
  EXPECT_EQ(r1.outcome, Outcome::ok);

  ForwardRequest bin = sample_request();
  bin.method = "PUT";
  bin.content_format = 42;
  bin.payload = bytes(std::string("\xff\x00\x80", 3));
  auto r2 = forward(sink, bin);
  EXPECT_EQ(r2.code, coap_code(2, 4));

  auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  auto a = test::parse_flat_json(lines[0]);
  auto b = test::parse_flat_json(lines[1]);
  ASSERT_TRUE(a) << lines[0];
  ASSERT_TRUE(b) << lines[1];
  EXPECT_EQ((*a)["payload"].value, "temp=21.5 \"quoted\"\n\\ tab\t");
  EXPECT_EQ((*b)["method"].value, "PUT");
  EXPECT_EQ((*b)["content_format"].value, "42");
  EXPECT_EQ(b->count("payload"), 0u);
  EXPECT_EQ((*b)["payload_b64"].value, "/wCA");
}

TEST_F(FileSinkTest, ReopenAfterRenameStartsANewFile) {
  const auto path = dir_.path / "t.jsonl";
  const auto rotated = dir_.path / "t.jsonl.1";
  FileSink sink(io_, path.string());
  ForwardRequest first = sample_request();
  first.session_id = 1;
  forward(sink, first);
  std::filesystem::rename(path, rotated);
  sink.reopen();
  ForwardRequest second = sample_request();
  second.session_id = 2;
  forward(sink, second);

  auto old_lines = read_lines(rotated);
  auto new_lines = read_lines(path);
  ASSERT_EQ(old_lines.size(), 1u);
  ASSERT_EQ(new_lines.size(), 1u);
  EXPECT_EQ((*test::parse_flat_json(old_lines[0]))["session"].value, "1");
  EXPECT_EQ((*test::parse_flat_json(new_lines[0]))["session"].value, "2");
}

TEST_F(FileSinkTest, WriteErrorAnswers500) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  FileSink sink(io_, "/dev/full");
  auto r = forward(sink, sample_request());
  EXPECT_EQ(r.code, coap_code(5, 0));
  EXPECT_EQ(r.outcome, Outcome::upstream_error);
}

TEST_F(FileSinkTest, UnopenablePathThrowsAtStartup) {
  EXPECT_THROW(FileSink(io_, (dir_.path / "missing-dir" / "x.jsonl").string()), std::runtime_error);
}

// Several workers append to one path through their own descriptors; every
// line must come out whole.
TEST_F(FileSinkTest, LinesFromSeveralWorkersNeverInterleave) {
  const auto path = dir_.path / "shared.jsonl";
  constexpr int workers = 4;
  constexpr int per_worker = 100;
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      boost::asio::io_context io;
      FileSink sink(io, path.string());
      int answered = 0;
      for (int i = 0; i < per_worker; ++i) {
        ForwardRequest r = sample_request();
        r.session_id = static_cast<std::uint64_t>(w);
        r.payload = bytes(std::string(3000, static_cast<char>('a' + w)));
        sink.forward(std::move(r), [&](ForwardResponse) { ++answered; });
      }
      test::run_until(io, [&] { return answered == per_worker; });
    });
  }
  for (auto& t : threads) t.join();
  auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(workers * per_worker));
  for (const auto& line : lines) {
    auto obj = test::parse_flat_json(line);
    ASSERT_TRUE(obj) << line.substr(0, 80);
    const int w = std::stoi((*obj)["session"].value);
    EXPECT_EQ((*obj)["payload"].value, std::string(3000, static_cast<char>('a' + w)));
  }
}

}  // namespace
}  // namespace coapgw::upstream
