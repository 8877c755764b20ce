// Helpers for the gateway tests: drive an io_context until a forward
// answered (bounded), a minimal flat JSON object parser for the file sink
// lines, and a temporary directory.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "upstream/forward.hpp"

namespace coapgw::upstream::test {

// Runs `io` in this thread until `ready()` or the bound; returns ready().
inline bool run_until(boost::asio::io_context& io, const std::function<bool()>& ready,
                      std::chrono::milliseconds bound = std::chrono::seconds(15)) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!ready() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(20));
  }
  return ready();
}

// A ForwardDone that stores the answer and counts calls.
struct Slot {
  std::optional<ForwardResponse> response;
  int calls = 0;
  ForwardDone done() {
    return [this](ForwardResponse r) {
      ++calls;
      response = std::move(r);
    };
  }
};

inline std::vector<std::byte> bytes(std::string_view s) {
  std::vector<std::byte> out(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) out[i] = static_cast<std::byte>(s[i]);
  return out;
}

inline std::string text(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Value of a flat JSON object: strings decoded, numbers and literals raw.
struct JsonValue {
  bool is_string = false;
  std::string value;
};

// Parses one JSON object whose values are strings, numbers, true/false/null.
// Strict enough to catch escaping bugs: nullopt on anything malformed.
inline std::optional<std::map<std::string, JsonValue>> parse_flat_json(std::string_view s) {
  std::size_t i = 0;
  auto ws = [&] { while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i; };
  auto append_utf8 = [](std::string& out, unsigned cp) {
    if (cp < 0x80) out += static_cast<char>(cp);
    else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) { out += static_cast<char>(0xE0 | (cp >> 12)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
    else { out += static_cast<char>(0xF0 | (cp >> 18)); out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
  };
  auto hex4 = [&](unsigned& cp) {
    if (i + 4 > s.size()) return false;
    cp = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s[i++];
      cp <<= 4;
      if (c >= '0' && c <= '9') cp |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') cp |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') cp |= static_cast<unsigned>(c - 'A' + 10);
      else return false;
    }
    return true;
  };
  auto str = [&](std::string& out) {
    if (i >= s.size() || s[i] != '"') return false;
    ++i;
    while (i < s.size() && s[i] != '"') {
      auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x20) return false;
      if (c != '\\') { out += s[i++]; continue; }
      if (++i >= s.size()) return false;
      char e = s[i++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00) {
            unsigned lo;
            if (i + 2 > s.size() || s[i] != '\\' || s[i + 1] != 'u') return false;
            i += 2;
            if (!hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: return false;
      }
    }
    if (i >= s.size()) return false;
    ++i;
    return true;
  };
  std::map<std::string, JsonValue> obj;
  ws();
  if (i >= s.size() || s[i++] != '{') return std::nullopt;
  ws();
  if (i < s.size() && s[i] == '}') { ++i; }
  else {
    for (;;) {
      ws();
      std::string key;
      if (!str(key)) return std::nullopt;
      ws();
      if (i >= s.size() || s[i++] != ':') return std::nullopt;
      ws();
      JsonValue v;
      if (i < s.size() && s[i] == '"') {
        v.is_string = true;
        if (!str(v.value)) return std::nullopt;
      } else {
        while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ' ') v.value += s[i++];
        if (v.value.empty()) return std::nullopt;
        if (v.value != "null" && v.value != "true" && v.value != "false" &&
            v.value.find_first_not_of("-0123456789.eE+") != std::string::npos) {
          return std::nullopt;
        }
      }
      if (obj.count(key)) return std::nullopt;
      obj[key] = v;
      ws();
      if (i < s.size() && s[i] == ',') { ++i; continue; }
      if (i < s.size() && s[i] == '}') { ++i; break; }
      return std::nullopt;
    }
  }
  ws();
  if (i != s.size()) return std::nullopt;
  return obj;
}

// A fresh directory under the system temp dir, removed on destruction.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("coapgw-gw-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace coapgw::upstream::test
