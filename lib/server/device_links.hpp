// coapgw::server::DeviceLinks — one worker's half of the downlink (DESIGN "Downlink", Call-Home):
// it finds a device's live session on this worker (DTLS sessions by their authenticated identity,
// indexed when the handshake names it; plain sessions `coap:<ip>:<port>` by address), turns the
// session into a client session while requests to the device are pending (set_type_client holds
// it: never reclaimed meanwhile; set_type_server when the last one ended), and sends each request
// through the worker's exchange::Layer client role (tokens, CON retransmission, Block1/Block2,
// the deadline). Runs on the worker's thread only; the process-wide RuntimeDownlink posts here.
// It reads no clock itself: deadlines and notification order take the injected clock's time.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/downlink.hpp"
#include "exchange/layer.hpp"
#include "exchange/observe_order.hpp"
#include "upstream/forward.hpp"
#include "session/table.hpp"

namespace coapgw::metrics {
class Metrics;
}

namespace coapgw::server {

class DeviceLinks {
 public:
  // `post` runs a function later on the worker's thread; `flush` sends what the layer queued.
  // `notifier` makes the HTTP client a notify URL's notifications are POSTed through (throws
  // std::runtime_error on a bad URL).
  // `clock` tells the time (the worker's steady clock; a fake one in tests).
  using Notifier = std::function<std::unique_ptr<upstream::Upstream>(const upstream::RouteSpec&)>;
  using Clock = std::function<session::TimePoint()>;
  DeviceLinks(session::Table& table, exchange::Layer& layer, std::function<void(std::function<void()>)> post,
              std::function<void()> flush, Notifier notifier, metrics::Metrics& metrics, Clock clock);
  ~DeviceLinks();

  // The plain CoAP listeners of the worker (endpoint index, bound port): where `coap:` devices live.
  void set_plain_endpoints(std::vector<std::pair<std::uint8_t, std::uint16_t>> endpoints);
  // A DTLS session whose identity is now known (set_device_identity).
  void identified(session::Session& s);
  // A session closed: out of the index.
  void closed(const session::Session& s);

  // The device's most recently heard live session here, or nullptr.
  session::Session* find(const api::DeviceRef& device);
  // Sends `request` over the device's session; `done` runs once, on this thread, later.
  void send(const api::DeviceRef& device, api::DownlinkRequest request, std::chrono::milliseconds timeout,
            std::function<void(api::DownlinkResult)> done);

  // device_observe.cpp: RFC 7641 observations of device resources, POSTed to a notify URL.
  void observe(const api::DeviceRef& device, api::ObserveRequest request, std::chrono::milliseconds timeout,
               std::function<void(api::ObserveResult)> done);
  bool cancel_observation(const api::DeviceRef& device, std::uint64_t id);

  std::size_t pending() const { return pending_; }
  unsigned pending_on(const session::Session& s) const {
    auto it = calls_.find(s.id());
    return it == calls_.end() ? 0 : it->second;
  }

 private:
  void begin_call(session::Session& s);
  void end_call(session::Session& s);
  struct Observation {
    std::uint64_t id = 0;
    std::string device_key;
    session::Session* session = nullptr;  // held by begin_call() until the observation ends
    exchange::Token token = 0;
    api::DownlinkRequest target;          // the resource, for the deregistration
    std::unique_ptr<upstream::Upstream> notifier;
    std::string notify_path;
    exchange::ObserveOrder order;
    std::deque<upstream::ForwardRequest> outbox;
    bool posting = false;
    bool registered = false;
    bool ended = false;                   // kept only to deliver what is still in the outbox
    std::function<void(api::ObserveResult)> done;  // until registered
  };
  void on_observe_answer(std::uint64_t id, exchange::Result result);
  void notify(Observation& o, exchange::Response response, std::optional<std::uint32_t> seq);
  void post_next(std::uint64_t id);
  void end_observation(std::uint64_t id, bool deregister);

  session::Table& table_;
  exchange::Layer& layer_;
  std::function<void(std::function<void()>)> post_;
  std::function<void()> flush_;
  std::vector<std::pair<std::uint8_t, std::uint16_t>> plain_endpoints_;
  struct Indexed {
    session::Key key;
    std::uint64_t id;
  };
  std::unordered_map<std::string, std::vector<Indexed>> by_identity_;
  std::unordered_map<std::uint64_t, unsigned> calls_;  // session id -> downlinks pending on it
  std::size_t pending_ = 0;
  Notifier notifier_;
  metrics::Metrics& metrics_;
  Clock clock_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Observation>> observations_;
};

// The CoAP request a backend described (no deadline set).
exchange::Request to_exchange_request(const api::DownlinkRequest& request);
// The answer a device gave, as the API reports it.
api::DownlinkResult to_downlink_result(exchange::Result result, const session::Session& s);

}  // namespace coapgw::server
