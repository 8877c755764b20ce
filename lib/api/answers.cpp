// JSON answers of the backend API; see answers.hpp. Written with nlohmann-json
// (replacing invalid UTF-8 in identities and paths, which are device bytes).
#include "api/answers.hpp"

#include <nlohmann/json.hpp>

#include "api/request_body.hpp"
#include "common/json.hpp"

namespace coapgw::api {

namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// code, content_format and the payload as text or base64.
void put_message(json& j, std::uint8_t code, const std::optional<std::uint16_t>& content_format,
                 const std::string& payload) {
  j["code"] = code_text(code);
  j["content_format"] = content_format ? json(*content_format) : json(nullptr);
  if (coapgw::json::is_valid_utf8(payload)) {
    j["payload"] = payload;
  } else {
    j["payload_b64"] = base64_encode(payload);
  }
}

json answer_object(const DownlinkAnswer& a) {
  json j = json::object();
  put_message(j, a.code, a.content_format, a.payload);
  j["session"] = a.session;
  j["remote"] = a.remote.to_string();
  return j;
}

}  // namespace

std::string code_text(std::uint8_t code) {
  const unsigned detail = code & 0x1fu;
  std::string out = std::to_string(code >> 5) + '.';
  if (detail < 10) out += '0';
  return out + std::to_string(detail);
}

std::string render_answer(const DownlinkAnswer& answer) { return dump(answer_object(answer)); }

std::string render_queued(std::uint64_t id) {
  return dump(json{{"id", std::to_string(id)}, {"state", name(QueuedState::queued)}});
}

std::string render_record(const QueuedRequest& r) {
  json j{{"id", std::to_string(r.id)},
         {"device", r.device.key()},
         {"state", name(r.state)},
         {"path", r.request.path}};
  j["method"] = std::string(method_name(r.request.method));
  if (r.result && r.result->status == DownlinkStatus::answered) j["answer"] = answer_object(r.result->answer);
  if (r.result && r.result->status == DownlinkStatus::timeout) j["error"] = "no answer within the timeout";
  if (r.result && r.result->status == DownlinkStatus::rejected) j["error"] = r.result->reason;
  if (r.state == QueuedState::expired && !r.result) j["error"] = "the device was not heard from within queue_for";
  return dump(j);
}

std::string render_observation(const ObserveResult& result) {
  json j = answer_object(result.first);
  j["id"] = std::to_string(result.id);
  return dump(j);
}

std::string render_group(const GroupResult& result) {
  json list = json::array();
  for (const auto& a : result.responses) {
    json j = json::object();
    j["remote"] = a.remote.to_string();
    put_message(j, a.code, a.content_format, a.payload);
    list.push_back(std::move(j));
  }
  return dump(json{{"responses", std::move(list)}});
}

std::string render_error(std::string_view message) { return dump(json{{"error", std::string(message)}}); }

}  // namespace coapgw::api
