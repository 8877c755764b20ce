// JSON request bodies -> Downlink types; see request_body.hpp.
#include "api/request_body.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <initializer_list>

#include "common/url.hpp"
#include "config/config.hpp"

namespace coapgw::api {

namespace {

using nlohmann::json;
using std::chrono::milliseconds;

constexpr std::array<std::string_view, 7> method_names{"GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH"};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Reads members of one JSON object; the first problem wins and later reads
// do nothing, so a parser reads every member and then checks error().
class Members {
 public:
  Members(const json& object, std::initializer_list<std::string_view> allowed) : object_(object) {
    for (const auto& [key, value] : object_.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        fail("unknown member \"" + key + "\"");
        break;
      }
    }
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  bool fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }
  bool has(const char* key) const { return ok() && object_.contains(key) && !object_.at(key).is_null(); }

  std::optional<std::string> string(const char* key) {
    if (!has(key)) return std::nullopt;
    const auto& v = object_.at(key);
    if (!v.is_string()) return fail_type(key, "a string"), std::nullopt;
    return v.get<std::string>();
  }
  std::optional<bool> boolean(const char* key) {
    if (!has(key)) return std::nullopt;
    const auto& v = object_.at(key);
    if (!v.is_boolean()) return fail_type(key, "true or false"), std::nullopt;
    return v.get<bool>();
  }
  std::optional<std::uint16_t> uint16(const char* key) {
    if (!has(key)) return std::nullopt;
    const auto& v = object_.at(key);
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() > 65535)
      return fail_type(key, "an integer 0-65535"), std::nullopt;
    return static_cast<std::uint16_t>(v.get<std::uint64_t>());
  }
  // "30s", "5m", "250ms"; must be > 0 and <= max.
  std::optional<milliseconds> duration(const char* key, milliseconds max) {
    const auto text = string(key);
    if (!text) return std::nullopt;
    const auto d = config::parse_duration(*text);
    if (!d || d->count() <= 0 || *d > max)
      return fail_type(key, "a duration like \"30s\", \"5m\" or \"250ms\", above 0 and at most " +
                                std::to_string(max.count() / 1000) + "s"),
             std::nullopt;
    return *d;
  }

 private:
  void fail_type(const char* key, const std::string& what) {
    fail(std::string("\"") + key + "\" must be " + what);
  }
  const json& object_;
  std::string error_;
};

// Parses the text as one JSON object; nullopt (error set) otherwise.
std::optional<json> parse_object(std::string_view body, std::string& error) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    error = "the body is not valid JSON";
    return std::nullopt;
  }
  if (!j.is_object()) {
    error = "the body must be a JSON object";
    return std::nullopt;
  }
  return j;
}

// path (required, "/a/b"), query (optional, "a=1&b=2") into Uri-Path / Uri-Query.
bool read_target(Members& m, std::string& path, std::vector<std::string>& uri_path,
                 std::vector<std::string>& uri_query) {
  const auto p = m.string("path");
  if (!m.ok()) return false;
  if (!p) return m.fail("\"path\" is required");
  if (p->empty() || p->front() != '/') return m.fail("\"path\" must start with '/'");
  if (p->find_first_of("?#") != std::string::npos) return m.fail("\"path\" must not hold '?' or '#': use \"query\"");
  path = *p;
  uri_path = url::split_path(*p);
  for (const auto& segment : uri_path) {
    if (segment == "." || segment == "..") return m.fail("\"path\" must not hold \".\" or \"..\" segments");
    if (segment.size() > max_option_bytes)
      return m.fail("\"path\" segments must be at most " + std::to_string(max_option_bytes) + " bytes");
  }
  if (uri_path.size() > max_options) return m.fail("\"path\" has more than " + std::to_string(max_options) + " segments");
  auto q = m.string("query");
  if (!m.ok()) return false;
  if (q) {
    std::string_view text = *q;
    if (!text.empty() && text.front() == '?') text.remove_prefix(1);
    uri_query = url::split_query(text);
    if (uri_query.size() > max_options) return m.fail("\"query\" has more than " + std::to_string(max_options) + " parts");
    for (const auto& part : uri_query)
      if (part.size() > max_option_bytes)
        return m.fail("\"query\" parts must be at most " + std::to_string(max_option_bytes) + " bytes");
  }
  return true;
}

// method, path, query, content_format, payload | payload_b64.
bool read_request(Members& m, DownlinkRequest& out) {
  const auto method = m.string("method");
  if (!m.ok()) return false;
  if (!method) return m.fail("\"method\" is required");
  const auto it = std::find_if(method_names.begin(), method_names.end(),
                               [&](std::string_view n) { return iequals(n, *method); });
  if (it == method_names.end()) return m.fail("\"method\" must be GET, POST, PUT, DELETE, FETCH, PATCH or iPATCH");
  out.method = static_cast<std::uint8_t>(1 + (it - method_names.begin()));
  if (!read_target(m, out.path, out.uri_path, out.uri_query)) return false;
  out.content_format = m.uint16("content_format");
  const auto text = m.string("payload");
  const auto b64 = m.string("payload_b64");
  if (!m.ok()) return false;
  if (text && b64) return m.fail("give \"payload\" or \"payload_b64\", not both");
  if (text) out.payload = *text;
  if (b64) {
    auto bytes = base64_decode(*b64);
    if (!bytes) return m.fail("\"payload_b64\" is not base64 (RFC 4648, with padding)");
    out.payload = std::move(*bytes);
  }
  return true;
}

// Parses `body` as one object with only `allowed` members and fills a T with
// `read(members, out)`; the first problem, from either, is the error.
template <typename T, typename Read>
Parsed<T> parse_with(std::string_view body, std::initializer_list<std::string_view> allowed, Read read) {
  std::string error;
  const auto j = parse_object(body, error);
  if (!j) return {std::nullopt, std::move(error)};
  Members m(*j, allowed);
  T out;
  read(m, out);
  if (!m.ok()) return {std::nullopt, m.error()};
  return {std::move(out), {}};
}

}  // namespace

Parsed<DeviceRequestSpec> parse_device_request(std::string_view body) {
  return parse_with<DeviceRequestSpec>(
      body,
      {"method", "path", "query", "content_format", "payload", "payload_b64", "confirmable", "timeout", "queue_for"},
      [](Members& m, DeviceRequestSpec& spec) {
        read_request(m, spec.request);
        if (auto con = m.boolean("confirmable")) spec.request.confirmable = *con;
        if (auto timeout = m.duration("timeout", max_timeout)) spec.timeout = *timeout;
        spec.queue_for = m.duration("queue_for", max_queue_for);
      });
}

Parsed<ObserveSpec> parse_observe_request(std::string_view body) {
  return parse_with<ObserveSpec>(body, {"path", "query", "notify", "timeout"}, [](Members& m, ObserveSpec& spec) {
    read_target(m, spec.request.path, spec.request.uri_path, spec.request.uri_query);
    if (auto timeout = m.duration("timeout", max_timeout)) spec.timeout = *timeout;
    const auto notify = m.string("notify");
    if (!m.ok()) return;
    const auto parsed = notify ? url::parse_server_url(*notify) : std::nullopt;
    if (!parsed || (parsed->scheme != "http" && parsed->scheme != "https"))
      m.fail("\"notify\" must be an http:// or https:// URL without query");
    else
      spec.request.notify = *notify;
  });
}

Parsed<GroupRequest> parse_group_request(std::string_view body) {
  return parse_with<GroupRequest>(
      body,
      {"group", "method", "path", "query", "content_format", "payload", "payload_b64", "confirmable", "wait"},
      [](Members& m, GroupRequest& out) {
        const auto group = m.string("group");
        read_request(m, out.request);
        if (auto wait = m.duration("wait", max_wait)) out.wait = *wait;
        const auto con = m.boolean("confirmable");
        if (!m.ok()) return;
        if (con && *con) {
          m.fail("group requests are non-confirmable (RFC 7252 §8.1)");
          return;
        }
        out.request.confirmable = false;
        const auto address = group ? Address::parse(*group) : std::nullopt;
        if (!address || !address->is_multicast() || address->port() == 0)
          m.fail("\"group\" must be a multicast address with a port, like \"224.0.1.187:5683\" or "
                 "\"[ff02::fd]:5683\"");
        else
          out.group = *address;
      });
}

std::string_view method_name(std::uint8_t code) {
  return code >= 1 && code <= method_names.size() ? method_names[code - 1] : std::string_view{};
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  const auto is_b64 = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/'; };
  std::size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  if (!std::all_of(text.begin(), text.end() - static_cast<std::ptrdiff_t>(padding), is_b64)) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the bytes the padding stands for; drop them.
  out.resize(static_cast<std::size_t>(n) - padding);
  return out;
}

}  // namespace coapgw::api
