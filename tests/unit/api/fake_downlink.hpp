// A Downlink for tests: answers by device key as told, or holds the callback
// until the test answers it (from any thread), and records every call.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "api/downlink.hpp"

namespace coapgw::api::test {

class FakeDownlink : public Downlink {
 public:
  enum class Mode { answer, no_session, timeout, rejected, hold };

  void set(const std::string& device_key, Mode mode) {
    std::lock_guard lock(mutex_);
    modes_[device_key] = mode;
  }
  // Unknown devices answer no_session.
  Mode mode_of(const std::string& key) {
    std::lock_guard lock(mutex_);
    const auto it = modes_.find(key);
    return it == modes_.end() ? Mode::no_session : it->second;
  }

  void send(const DeviceRef& device, DownlinkRequest request, std::chrono::milliseconds timeout,
            std::function<void(DownlinkResult)> done) override {
    const Mode mode = mode_of(device.key());
    {
      std::lock_guard lock(mutex_);
      sent.push_back({device, request, timeout});
      if (mode == Mode::hold) {
        held.push_back(std::move(done));
        return;
      }
    }
    done(result_for(mode, request));
  }

  void observe(const DeviceRef& device, ObserveRequest request, std::chrono::milliseconds,
               std::function<void(ObserveResult)> done) override {
    ObserveResult r;
    const Mode mode = mode_of(device.key());
    r.status = mode == Mode::answer ? DownlinkStatus::answered : status_of(mode);
    r.id = 7;
    r.first.code = 69;
    r.first.payload = request.notify;
    done(r);
  }

  void cancel_observation(const DeviceRef&, std::uint64_t id, std::function<void(bool)> done) override {
    done(id == 7);
  }

  void send_group(GroupRequest request, std::function<void(GroupResult)> done) override {
    GroupResult r;
    for (int i = 0; i < 2; ++i) {
      DownlinkAnswer a;
      a.code = 69;
      a.payload = request.request.path;
      a.remote = *Address::parse("127.0.0." + std::to_string(i + 1) + ":5683");
      r.responses.push_back(a);
    }
    groups.push_back(std::move(request));
    done(r);
  }

  // Answers the oldest held request (any thread).
  bool answer_held(DownlinkResult result) {
    std::function<void(DownlinkResult)> done;
    {
      std::lock_guard lock(mutex_);
      if (held.empty()) return false;
      done = std::move(held.front());
      held.erase(held.begin());
    }
    done(std::move(result));
    return true;
  }
  std::size_t held_count() {
    std::lock_guard lock(mutex_);
    return held.size();
  }
  std::size_t sent_count() {
    std::lock_guard lock(mutex_);
    return sent.size();
  }

  static DownlinkResult answered(std::string payload, std::uint8_t code = 69) {
    DownlinkResult r;
    r.status = DownlinkStatus::answered;
    r.answer.code = code;
    r.answer.content_format = 0;
    r.answer.payload = std::move(payload);
    r.answer.session = 42;
    r.answer.remote = *Address::parse("192.0.2.1:5684");
    return r;
  }

  struct Sent {
    DeviceRef device;
    DownlinkRequest request;
    std::chrono::milliseconds timeout;
  };
  std::vector<Sent> sent;
  std::vector<GroupRequest> groups;
  std::vector<std::function<void(DownlinkResult)>> held;

 private:
  static DownlinkStatus status_of(Mode mode) {
    switch (mode) {
      case Mode::timeout: return DownlinkStatus::timeout;
      case Mode::rejected: return DownlinkStatus::rejected;
      default: return DownlinkStatus::no_session;
    }
  }
  static DownlinkResult result_for(Mode mode, const DownlinkRequest& request) {
    if (mode == Mode::answer) return answered("echo " + request.path);
    DownlinkResult r;
    r.status = status_of(mode);
    if (mode == Mode::rejected) r.reason = "busy";
    return r;
  }
  std::mutex mutex_;
  std::map<std::string, Mode> modes_;
};

}  // namespace coapgw::api::test
