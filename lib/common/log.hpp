// coapgw::log — leveled logging to stderr as text or JSON lines.
//
// journald and Docker collect stderr, so that is the only sink. Each line can
// carry the worker and session id. Per-datagram events never log at info;
// floods go through RateLimited so that one warning stands for many events.
// Messages carry strings that peers choose (PSK identities, Uri-Paths, hints):
// a text line escapes its whole message with append_escaped, a JSON line with
// json::append_string, so no peer can end a line early or forge another one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace coapgw::log {

enum class Level : int { trace = 0, debug, info, warn, error, off };
enum class Format { text, json };

std::optional<Level> parse_level(std::string_view name);
std::string_view level_name(Level level);

void configure(Level level, Format format);
void set_level(Level level);
Level level();
inline bool enabled(Level l) {
  extern std::atomic<int> g_level;
  return static_cast<int>(l) >= g_level.load(std::memory_order_relaxed);
}

// The calling thread's worker id, shown on every line it writes (-1: none).
void set_thread_worker(int worker);

// Appends `text` with every byte that could break or fake a text log line
// escaped: backslash as "\\", newline, CR and tab as "\n", "\r", "\t", any other
// control character (C0, DEL, C1, U+2028/U+2029) and every byte that is not
// part of valid UTF-8 as "\xNN". Printable ASCII and valid UTF-8 pass as-is.
void append_escaped(std::string& out, std::string_view text);
std::string escaped(std::string_view text);

void write(Level level, std::string_view message, std::uint64_t session_id = 0);

inline void trace(std::string_view m, std::uint64_t s = 0) { if (enabled(Level::trace)) write(Level::trace, m, s); }
inline void debug(std::string_view m, std::uint64_t s = 0) { if (enabled(Level::debug)) write(Level::debug, m, s); }
inline void info(std::string_view m, std::uint64_t s = 0) { if (enabled(Level::info)) write(Level::info, m, s); }
inline void warn(std::string_view m, std::uint64_t s = 0) { if (enabled(Level::warn)) write(Level::warn, m, s); }
inline void error(std::string_view m, std::uint64_t s = 0) { if (enabled(Level::error)) write(Level::error, m, s); }

// Lets one line through per interval and counts what it held back, so a flood
// of bad datagrams yields "... (1234 more suppressed)" once a period.
// Not thread-safe: keep one per worker.
class RateLimited {
 public:
  explicit RateLimited(std::chrono::steady_clock::duration interval = std::chrono::seconds(10))
      : interval_(interval) {}
  // Returns the number of suppressed events to report when a line may be
  // written now, or nullopt when this event should be suppressed.
  std::optional<std::uint64_t> allow(std::chrono::steady_clock::time_point now);

 private:
  std::chrono::steady_clock::duration interval_;
  std::chrono::steady_clock::time_point next_{};
  std::uint64_t suppressed_ = 0;
};

}  // namespace coapgw::log
