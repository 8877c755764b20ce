// The sleepy-device queue as CBOR bytes; see queue_snapshot.hpp.
#include "api/queue_snapshot.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <stdexcept>
#include <vector>

namespace coapgw::api {

namespace {

using nlohmann::json;
constexpr int format_version = 1;

json bytes_of(const std::string& text) { return json::binary(std::vector<std::uint8_t>(text.begin(), text.end())); }

std::string text_of(const json& value) {
  const auto& b = value.get_binary();
  return std::string(b.begin(), b.end());
}

json optional_number(const std::optional<std::uint16_t>& v) { return v ? json(*v) : json(nullptr); }

std::optional<std::uint16_t> number_or_none(const json& v) {
  if (v.is_null()) return std::nullopt;
  return v.get<std::uint16_t>();
}

std::int64_t to_unix(TimePoint t, Clocks now) {
  return now.unix_ms + std::chrono::duration_cast<std::chrono::milliseconds>(t - now.steady).count();
}

TimePoint to_steady(std::int64_t unix_ms, Clocks now) {
  return now.steady + std::chrono::milliseconds(unix_ms - now.unix_ms);
}

json save_result(const DownlinkResult& r) {
  return json{{"status", static_cast<int>(r.status)},
              {"code", r.answer.code},
              {"cf", optional_number(r.answer.content_format)},
              {"payload", bytes_of(r.answer.payload)},
              {"session", r.answer.session},
              {"remote", r.answer.remote.to_string()},
              {"reason", r.reason}};
}

Address address_of(const std::string& text) {
  auto a = Address::parse(text);
  if (!a) throw std::invalid_argument("bad address " + text);
  return *a;
}

DownlinkResult load_result(const json& j) {
  DownlinkResult r;
  const int status = j.at("status").get<int>();
  if (status < 0 || status > static_cast<int>(DownlinkStatus::rejected)) throw std::invalid_argument("bad status");
  r.status = static_cast<DownlinkStatus>(status);
  r.answer.code = j.at("code").get<std::uint8_t>();
  r.answer.content_format = number_or_none(j.at("cf"));
  r.answer.payload = text_of(j.at("payload"));
  r.answer.session = j.at("session").get<std::uint64_t>();
  const auto remote = j.at("remote").get<std::string>();
  if (auto a = Address::parse(remote)) r.answer.remote = *a;
  r.reason = j.at("reason").get<std::string>();
  return r;
}

json save_record(const QueuedRequest& e, Clocks now) {
  const auto& q = e.request;
  json j{{"id", e.id},
         {"plain", e.device.kind == DeviceRef::Kind::plain},
         {"identity", e.device.identity},
         {"remote", e.device.remote.to_string()},
         {"method", q.method},
         {"path", q.path},
         {"uri_path", q.uri_path},
         {"uri_query", q.uri_query},
         {"cf", optional_number(q.content_format)},
         {"payload", bytes_of(q.payload)},
         {"con", q.confirmable},
         {"timeout_ms", e.timeout.count()},
         {"expires_ms", to_unix(e.expires_at, now)},
         {"state", static_cast<int>(e.state)},
         {"finished_ms", to_unix(e.finished_at, now)},
         {"result", e.result ? save_result(*e.result) : json(nullptr)}};
  return j;
}

QueuedRequest load_record(const json& j, Clocks now) {
  QueuedRequest e;
  e.id = j.at("id").get<std::uint64_t>();
  if (j.at("plain").get<bool>()) {
    e.device.kind = DeviceRef::Kind::plain;
    e.device.remote = address_of(j.at("remote").get<std::string>());
  } else {
    e.device.identity = j.at("identity").get<std::string>();
    if (e.device.identity.empty() || e.device.identity.size() > max_identity_bytes)
      throw std::invalid_argument("bad identity");
  }
  auto& q = e.request;
  q.method = j.at("method").get<std::uint8_t>();
  if (q.method < 1 || q.method > 7) throw std::invalid_argument("bad method");
  q.path = j.at("path").get<std::string>();
  q.uri_path = j.at("uri_path").get<std::vector<std::string>>();
  q.uri_query = j.at("uri_query").get<std::vector<std::string>>();
  q.content_format = number_or_none(j.at("cf"));
  q.payload = text_of(j.at("payload"));
  q.confirmable = j.at("con").get<bool>();
  e.timeout = std::chrono::milliseconds(j.at("timeout_ms").get<std::int64_t>());
  e.expires_at = to_steady(j.at("expires_ms").get<std::int64_t>(), now);
  const int state = j.at("state").get<int>();
  if (state < 0 || state > static_cast<int>(QueuedState::cancelled)) throw std::invalid_argument("bad state");
  e.state = static_cast<QueuedState>(state);
  e.finished_at = to_steady(j.at("finished_ms").get<std::int64_t>(), now);
  if (!j.at("result").is_null()) e.result = load_result(j.at("result"));
  return e;
}

}  // namespace

std::string save_queue(const DownlinkQueue& queue, Clocks now) {
  json records = json::array();
  for (const auto* e : queue.records_by_id()) {
    if (records.size() >= max_snapshot_records) break;
    records.push_back(save_record(*e, now));
  }
  const json doc{{"v", format_version}, {"next_id", queue.next_id()}, {"records", std::move(records)}};
  const auto cbor = json::to_cbor(doc);
  return std::string(cbor.begin(), cbor.end());
}

std::optional<QueueLoad> load_queue(DownlinkQueue& queue, std::string_view bytes, Clocks now, std::string* error) {
  // Parse and check everything before the queue is touched.
  std::vector<QueuedRequest> records;
  std::uint64_t next_id = 0;
  try {
    const json doc = json::from_cbor(bytes.begin(), bytes.end());
    if (doc.at("v").get<int>() != format_version) throw std::invalid_argument("unknown version");
    next_id = doc.at("next_id").get<std::uint64_t>();
    const auto& list = doc.at("records");
    if (!list.is_array() || list.size() > max_snapshot_records) throw std::invalid_argument("bad record list");
    for (const auto& j : list) records.push_back(load_record(j, now));
  } catch (const std::exception& e) {
    if (error) *error = std::string("not a downlink queue snapshot: ") + e.what();
    return std::nullopt;
  }
  QueueLoad load;
  for (auto& record : records) {
    const bool finished = record.state != QueuedState::queued && record.state != QueuedState::sent;
    if (!queue.restore(std::move(record), now.steady))
      ++load.dropped;
    else if (finished)
      ++load.finished;
    else
      ++load.queued;
  }
  queue.reserve_ids_below(next_id);
  return load;
}

}  // namespace coapgw::api
