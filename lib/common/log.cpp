#include "common/log.hpp"

#include <cstdio>
#include <ctime>
#include <mutex>

namespace coapgw::log {

std::atomic<int> g_level{static_cast<int>(Level::info)};

namespace {
std::atomic<int> g_format{static_cast<int>(Format::text)};
thread_local int t_worker = -1;
std::mutex g_write_mutex;  // whole lines only; logging is off the hot path

void append_json_escaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
}

std::string timestamp() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
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
    line += ",\"msg\":\"";
    append_json_escaped(line, message);
    line += "\"}\n";
  } else {
    line += timestamp();
    line += ' ';
    line += level_name(level);
    if (t_worker >= 0) line += " worker=" + std::to_string(t_worker);
    if (session_id != 0) line += " session=" + std::to_string(session_id);
    line += ' ';
    line += message;
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
