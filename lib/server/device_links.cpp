// One worker's downlink: see device_links.hpp.
#include "server/device_links.hpp"

#include <algorithm>
#include <array>

#include "coap/option.hpp"
#include "server/dtls_tls.hpp"

namespace coapgw::server {

DeviceLinks::DeviceLinks(session::Table& table, exchange::Layer& layer,
                         std::function<void(std::function<void()>)> post, std::function<void()> flush,
                         Notifier notifier, metrics::Metrics& metrics, Clock clock)
    : table_(table),
      layer_(layer),
      post_(std::move(post)),
      flush_(std::move(flush)),
      notifier_(std::move(notifier)),
      metrics_(metrics),
      clock_(std::move(clock)) {}

void DeviceLinks::set_plain_endpoints(std::vector<std::pair<std::uint8_t, std::uint16_t>> endpoints) {
  plain_endpoints_ = std::move(endpoints);
}

void DeviceLinks::identified(session::Session& s) {
  auto* device = static_cast<DeviceData*>(s.app_data());
  if (device == nullptr || device->identity().empty()) return;
  auto& list = by_identity_[std::string(device->identity())];
  if (device->link_slot < list.size() && list[device->link_slot].id == s.id()) {
    list[device->link_slot].key = s.key();  // called again when the session's address moved (RFC 9146 CID)
    return;
  }
  device->link_slot = static_cast<std::uint32_t>(list.size());
  list.push_back(Indexed{s.key(), s.id()});
}

void DeviceLinks::closed(const session::Session& s) {
  const auto* device = static_cast<const DeviceData*>(s.app_data());
  if (device == nullptr || device->identity().empty()) return;
  auto it = by_identity_.find(std::string(device->identity()));
  if (it == by_identity_.end()) return;
  auto& list = it->second;
  const std::uint32_t slot = device->link_slot;
  if (slot < list.size() && list[slot].id == s.id()) {
    // The last entry takes this one's place, and its session learns its new slot.
    if (slot + 1 != list.size()) {
      list[slot] = list.back();
      if (auto* moved = table_.find(list[slot].key); moved != nullptr && moved->id() == list[slot].id)
        if (auto* data = static_cast<DeviceData*>(moved->app_data())) data->link_slot = slot;
    }
    list.pop_back();
  } else {
    std::erase_if(list, [&](const Indexed& e) { return e.id == s.id(); });  // not where it should be
  }
  if (list.empty()) by_identity_.erase(it);
}

session::Session* DeviceLinks::find(const api::DeviceRef& device) {
  session::Session* best = nullptr;
  auto consider = [&](session::Session* s) {
    if (s == nullptr || s->closed() || s->state() != session::State::established) return;
    if (best == nullptr || s->last_seen() > best->last_seen()) best = s;
  };
  if (device.kind == api::DeviceRef::Kind::plain) {
    for (auto& [endpoint, port] : plain_endpoints_)
      consider(table_.find(session::Key{device.remote, port, session::Proto::udp, endpoint}));
    for (const auto& e : stream_endpoints_) consider(table_.find(session::Key{device.remote, e.port, e.proto, e.index}));
    return best;
  }
  auto it = by_identity_.find(device.identity);
  if (it == by_identity_.end()) return nullptr;
  for (auto& e : it->second) {
    auto* s = table_.find(e.key);
    if (s != nullptr && s->id() == e.id && device_identity(*s) == device.identity) consider(s);
  }
  return best;
}

namespace {
void add_option(exchange::Request& r, std::uint16_t number, std::string_view value) {
  auto bytes = coap::as_bytes(value);
  r.options.push_back(coap::Option{number, std::vector<std::byte>(bytes.begin(), bytes.end())});
}

api::DownlinkResult failed(api::DownlinkStatus status, std::string reason) {
  api::DownlinkResult r;
  r.status = status;
  r.reason = std::move(reason);
  return r;
}
}  // namespace

exchange::Request to_exchange_request(const api::DownlinkRequest& request) {
  exchange::Request req;
  req.type = request.confirmable ? coap::Type::con : coap::Type::non;
  req.code = request.method;
  for (auto& seg : request.uri_path) add_option(req, coap::option::uri_path, seg);
  for (auto& q : request.uri_query) add_option(req, coap::option::uri_query, q);
  if (request.content_format) {
    std::array<std::byte, 4> buf{};
    auto n = coap::encode_uint(*request.content_format, buf);
    req.options.push_back(coap::Option{coap::option::content_format, std::vector<std::byte>(buf.begin(), buf.begin() + n)});
  }
  auto payload = coap::as_bytes(request.payload);
  req.payload.assign(payload.begin(), payload.end());
  return req;
}

api::DownlinkResult to_downlink_result(exchange::Result result, const session::Session& s) {
  using api::DownlinkStatus;
  if (result.failure) {
    switch (*result.failure) {
      case exchange::Failure::timeout: return failed(DownlinkStatus::timeout, "");
      case exchange::Failure::reset: return failed(DownlinkStatus::rejected, "the device answered with RST");
      case exchange::Failure::bad_response: return failed(DownlinkStatus::rejected, "bad block-wise answer");
      case exchange::Failure::unreachable:
      case exchange::Failure::closed: return failed(DownlinkStatus::no_session, "the session ended");
      case exchange::Failure::unencodable: return failed(DownlinkStatus::rejected, "request does not fit a message");
    }
  }
  api::DownlinkResult r;
  r.status = DownlinkStatus::answered;
  auto& response = result.response;
  r.answer.code = response.code;
  if (auto* cf = response.find(coap::option::content_format))
    r.answer.content_format = static_cast<std::uint16_t>(coap::decode_uint(cf->value));
  r.answer.payload.assign(reinterpret_cast<const char*>(response.payload.data()), response.payload.size());
  r.answer.session = s.id();
  r.answer.remote = s.addr_remote();
  return r;
}

void DeviceLinks::send(const api::DeviceRef& device, api::DownlinkRequest request, std::chrono::milliseconds timeout,
                       std::function<void(api::DownlinkResult)> done) {
  auto* s = find(device);
  if (s == nullptr) return done(failed(api::DownlinkStatus::no_session, ""));
  const auto now = clock_();
  exchange::Request req = to_exchange_request(request);
  req.deadline = now + timeout;

  begin_call(*s);
  // The answer is posted: the layer's tables are settled, and the session is held by the Call-Home
  // reference until end_call().
  auto handler = [this, s, done](exchange::Result result) mutable {
    post_([this, s, done = std::move(done), result = std::move(result)]() mutable {
      auto answer = to_downlink_result(std::move(result), *s);
      end_call(*s);
      done(std::move(answer));
    });
  };
  if (!layer_.client().start(*s, std::move(req), std::move(handler), now, false)) {
    end_call(*s);
    return done(failed(api::DownlinkStatus::rejected, "too many downlink requests in flight"));
  }
  flush_();
}

void DeviceLinks::begin_call(session::Session& s) {
  ++pending_;
  if (calls_[s.id()]++ == 0 && !s.set_type_client()) s.reference();  // already a client: hold it anyway
}

void DeviceLinks::end_call(session::Session& s) {
  --pending_;
  auto it = calls_.find(s.id());
  if (it == calls_.end() || --it->second != 0) return;
  calls_.erase(it);
  // The last downlink on this session ended: it serves its device again (idle pool rules), or, closed
  // meanwhile, is freed by this release.
  if (!s.set_type_server()) s.release();
}

}  // namespace coapgw::server
