#include "common/log.hpp"

#include "common/bytes.hpp"
#include "common/json.hpp"

#include <cstdio>
#include <ctime>
#include <mutex>

namespace coapgw::log {

std::atomic<int> g_level{static_cast<int>(Level::info)};

namespace {
std::atomic<int> g_format{static_cast<int>(Format::text)};
thread_local int t_worker = -1;
std::mutex g_write_mutex;  // whole lines only; logging is off the hot path

std::string timestamp() {
  using namespace std::chrono;
  return json::rfc3339_utc_ms(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}
}  // namespace

std::optional<Level> parse_level(std::string_view name) {
  if (name == "trace") return Level::trace;
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn") return Level::warn;
  if (name == "error") return Level::error;
  return std::nullopt;
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::trace: return "trace";
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
    case Level::off: return "off";
  }
  return "?";
}

void configure(Level level, Format format) {
  g_level.store(static_cast<int>(level));
  g_format.store(static_cast<int>(format));
}
void set_level(Level level) { g_level.store(static_cast<int>(level)); }
Level level() { return static_cast<Level>(g_level.load()); }
void set_thread_worker(int worker) { t_worker = worker; }

void append_escaped(std::string& out, std::string_view text) {
  const auto put_hex = [&](unsigned char c) {
    out += "\\x";
    bytes::append_hex(out, std::span<const unsigned char>(&c, 1));
  };
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      put_hex(c);
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      const std::size_t n = json::utf8_sequence_length(text, i);
      const auto b1 = n >= 2 ? static_cast<unsigned char>(text[i + 1]) : 0;
      const auto b2 = n >= 3 ? static_cast<unsigned char>(text[i + 2]) : 0;
      const bool c1_control = n == 2 && c == 0xC2 && b1 < 0xA0;                          // U+0080..U+009F
      const bool line_separator = n == 3 && c == 0xE2 && b1 == 0x80 && (b2 == 0xA8 || b2 == 0xA9);  // U+2028/9
      if (n == 0 || c1_control || line_separator) {
        for (std::size_t k = 0; k < (n == 0 ? 1 : n); ++k) put_hex(static_cast<unsigned char>(text[i + k]));
        i += n == 0 ? 1 : n;
      } else {
        out.append(text.substr(i, n));
        i += n;
      }
      continue;
    }
    ++i;
  }
}

std::string escaped(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_escaped(out, text);
  return out;
}

void write(Level level, std::string_view message, std::uint64_t session_id) {
  std::string line;
  line.reserve(message.size() + 96);
  if (static_cast<Format>(g_format.load()) == Format::json) {
    line += "{\"ts\":\"";
    line += timestamp();
    line += "\",\"level\":\"";
    line += level_name(level);
    line += '"';
    if (t_worker >= 0) line += ",\"worker\":" + std::to_string(t_worker);
    if (session_id != 0) line += ",\"session\":" + std::to_string(session_id);
    line += ",\"msg\":";
    json::append_string(line, message);
    line += "}\n";
  } else {
    line += timestamp();
    line += ' ';
    line += level_name(level);
    if (t_worker >= 0) line += " worker=" + std::to_string(t_worker);
    if (session_id != 0) line += " session=" + std::to_string(session_id);
    line += ' ';
    append_escaped(line, message);  // the message may carry peer-chosen bytes
    line += '\n';
  }
  std::lock_guard lock(g_write_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

std::optional<std::uint64_t> RateLimited::allow(std::chrono::steady_clock::time_point now) {
  if (now >= next_) {
    next_ = now + interval_;
    auto held = suppressed_;
    suppressed_ = 0;
    return held;
  }
  ++suppressed_;
  return std::nullopt;
}

}  // namespace coapgw::log
