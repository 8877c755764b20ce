// coapgw-bench load worker — the epoll loop and the per-mode phases (see load_worker.hpp).
#include "load_worker.hpp"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "coap_exchange.hpp"
#include "device_socket.hpp"
#include "dtls_channel.hpp"
#include "plain_channel.hpp"
#include "retry_policy.hpp"
#include "stats.hpp"

namespace coapgw::bench {
namespace {

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t seconds_to_ns(double seconds) { return static_cast<std::uint64_t>(seconds * 1e9); }

enum class Purpose : std::uint8_t { open, measure, keepalive, verify, cycle };

struct Pending {
  std::uint32_t token;
  std::uint16_t message_id;
  Purpose purpose;
  std::uint64_t sent_ns;
};

// waiting: set-up failed, a retry is due later (--setup-deadline).
enum class DeviceState : std::uint8_t { closed, handshaking, open, failed, waiting };

// A retrying device sends from another alias of its source address (its slot's address plus
// attempt % 4 strides; the port stays), so each attempt is a new association at the gateway and the
// kernel never runs out of ports: 40 blocks of 50,000 devices at most (max_devices), 64 apart.
constexpr std::uint32_t retry_address_stride = 64;
constexpr std::uint32_t retry_address_classes = 4;
constexpr std::uint8_t verify_grace_asks = 2;  // a verify GET unanswered in --timeout is asked again up to this often

struct Device {
  int fd = -1;
  std::unique_ptr<SecureChannel> dtls;
  bool rebind_wanted = false;  // --rebind: the next request goes out from a new source port
  std::uint32_t slot = 0;
  std::uint32_t generation = 0;  // bumped on every open, so a loop can tell it was reopened
  std::uint16_t next_message_id = 0;
  std::uint32_t next_token = 0;
  DeviceState state = DeviceState::closed;
  std::uint16_t failures = 0;  // failed set-up attempts (handshake or first GET), for the back-off
  std::uint8_t verify_asks = 0;  // verify GETs asked again after a timeout (--setup-deadline)
  bool swept = false;            // in the sweep list (handshaking or waiting for an answer)
  std::uint64_t started_ns = 0;
  std::vector<Pending> pending;
};

enum class Phase : std::uint8_t { setup, measure, hold, verify, done };

bool write_line(int fd, const std::string& line) {
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = write(fd, line.data() + done, line.size() - done);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

class Worker {
 public:
  Worker(const Options& options, const WorkerPlan& plan, sockaddr_in server, SourceSpace space,
         std::unique_ptr<DtlsClientContext> context)
      : options_(options), plan_(plan), server_(server), space_(space),
        context_(std::move(context)), request_(RequestTemplate::from_path(options.path)),
        devices_(plan.devices), device_was_opened_(plan.devices, false), random_(plan.index * 7919u + 1u) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  }
  ~Worker() {
    for (auto& device : devices_) close_device(device, false);
    if (epoll_fd_ >= 0) close(epoll_fd_);
  }

  int run(int report_fd, int go_fd) {
    if (epoll_fd_ < 0) return 2;
    const std::uint32_t setup_failures = setup();
    if (!write_line(report_fd, "READY opened=" + std::to_string(stats_.sessions_opened) +
                                   " failed=" + std::to_string(setup_failures) + "\n")) {
      return 2;
    }
    char go = 0;
    if (read(go_fd, &go, 1) != 1) return 2;  // the parent went away
    switch (options_.mode) {
      case Mode::requests: measure_requests(); break;
      case Mode::handshake: measure_handshakes(); break;
      case Mode::hold: hold_and_verify(); break;
    }
    phase_ = Phase::done;
    for (auto& device : devices_) close_device(device, !options_.leave_open);
    return write_line(report_fd, "STATS " + stats_.serialize() + "\n") ? 0 : 2;
  }

 private:
  // ---- phases ------------------------------------------------------------------------------

  // Opens every device at the open rate; returns how many could not be opened.
  std::uint32_t setup() {
    phase_ = Phase::setup;
    const bool contacts_server = options_.dtls || options_.mode == Mode::hold;
    if (options_.mode == Mode::handshake) return 0;
    if (!contacts_server) {  // plain requests: the first measured GET creates the server session
      std::uint32_t failed = 0;
      for (std::uint32_t i = 0; i < devices_.size(); ++i) {
        if (!open_socket(i, plan_.first_slot + i)) {
          ++failed;
          continue;
        }
        devices_[i].state = DeviceState::open;
      }
      return failed;
    }
    const std::uint64_t start = now_ns();
    const std::uint64_t deadline =
        options_.setup_deadline > 0
            ? start + seconds_to_ns(options_.setup_deadline)
            : start + seconds_to_ns(static_cast<double>(devices_.size()) / plan_.open_rate +
                                    options_.handshake_timeout + options_.timeout + 30.0);
    if (options_.setup_deadline > 0) {
      retry_.deadline_ns = deadline;
      retry_.initial_ns = seconds_to_ns(options_.retry_backoff);
    }
    std::uint32_t next = 0;
    while ((next < devices_.size() || opening_ > 0 || !retry_queue_.empty()) && now_ns() < deadline) {
      const std::uint64_t now = now_ns();
      // Devices whose back-off is over go first: they have waited longest.
      while (!retry_queue_.empty() && retry_queue_.top().first <= now && opening_ < options_.concurrency) {
        const std::uint32_t index = retry_queue_.top().second;
        retry_queue_.pop();
        start_open(index, plan_.first_slot + index);
      }
      const double allowed = plan_.open_rate * static_cast<double>(now - start) / 1e9 + 1;
      while (next < devices_.size() && opening_ < options_.concurrency &&
             static_cast<double>(next) < allowed) {
        start_open(next, plan_.first_slot + next);
        ++next;
      }
      // Paced opening needs the next millisecond; a process that can open nothing now sleeps until
      // an answer, its next back-off is over or the sweep is due (51 processes waking every
      // millisecond cost a million-device run a quarter of the bench's CPU in context switches).
      int wait_ms = 1;
      if (next >= devices_.size() || opening_ >= options_.concurrency) {
        wait_ms = idle_wait_ms;
        if (!retry_queue_.empty() && opening_ < options_.concurrency) {
          const std::uint64_t due = retry_queue_.top().first;
          wait_ms = due <= now ? 0 : static_cast<int>(std::min<std::uint64_t>((due - now) / 1'000'000 + 1, idle_wait_ms));
        }
      }
      poll_once(wait_ms);
    }
    retry_queue_ = {};  // still backing off at the deadline: they gave up
    std::uint32_t failed = 0;
    for (auto& device : devices_) {
      if (device.state != DeviceState::open) {
        close_device(device, false);
        device.state = DeviceState::failed;
        ++failed;
      }
    }
    opening_ = 0;
    return failed;
  }

  void measure_requests() {
    phase_ = Phase::measure;
    window_start_ = now_ns();
    window_end_ = window_start_ + seconds_to_ns(options_.duration);
    for (std::uint32_t i = 0; i < devices_.size(); ++i) {
      if (devices_[i].state != DeviceState::open) continue;
      for (std::uint32_t k = 0; k < options_.outstanding; ++k) ready_.push_back(i);
    }
    std::uint64_t rebind_cursor = 0;
    while (now_ns() < window_end_) {
      schedule_rebinds(window_start_, now_ns(), rebind_cursor);
      pump_requests(now_ns());
      poll_once(plan_.rate > 0 ? 1 : 5);
    }
  }

  // --rebind S: by time t, t / S * N rebinds are due, spread evenly over the devices; each happens
  // before the device's next request that has no other request in flight (an answer on its way to
  // the old port would be lost, as it is behind a real NAT, and counted as a timeout).
  void schedule_rebinds(std::uint64_t start, std::uint64_t now, std::uint64_t& cursor) {
    if (options_.rebind <= 0 || devices_.empty()) return;
    while (!retired_.empty() && retired_.front().first <= now) {
      close(retired_.front().second);
      retired_.pop_front();
    }
    const auto count = static_cast<std::uint64_t>(devices_.size());
    const auto due = static_cast<std::uint64_t>(static_cast<double>(now - start) / 1e9 / options_.rebind *
                                                static_cast<double>(count));
    while (cursor < due) devices_[static_cast<std::size_t>(cursor++ % count)].rebind_wanted = true;
  }

  // A new socket from a new source port for the device's session (the old one is closed).
  void rebind_device(std::uint32_t index) {
    Device& device = devices_[index];
    device.rebind_wanted = false;
    const int fd = open_device_socket(device.slot, space_, server_, /*ephemeral_port=*/true);
    if (fd < 0) return;
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u32 = index;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0 || !device.dtls || !device.dtls->rebind(fd)) {
      close(fd);
      ++stats_.errors;
      return;
    }
    if (options_.rebind_hold > 0) {  // --rebind-hold: the port stays taken a while, unread
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, device.fd, nullptr);
      retired_.emplace_back(now_ns() + seconds_to_ns(options_.rebind_hold), device.fd);
    } else {
      close(device.fd);  // also leaves the epoll set
    }
    device.fd = fd;
    ++stats_.rebinds;
  }

  void pump_requests(std::uint64_t now) {
    std::uint64_t budget = ready_.size();
    if (plan_.rate > 0) {
      const double allowed = plan_.rate * static_cast<double>(now - window_start_) / 1e9 + 1;
      budget = allowed > static_cast<double>(stats_.requests_sent)
                   ? static_cast<std::uint64_t>(allowed - static_cast<double>(stats_.requests_sent))
                   : 0;
    }
    while (budget > 0 && !ready_.empty()) {
      const std::uint32_t index = ready_.front();
      ready_.pop_front();
      --budget;
      if (devices_[index].state != DeviceState::open) continue;
      if (!send_request(index, Purpose::measure)) ready_.push_back(index);
    }
  }

  void measure_handshakes() {
    phase_ = Phase::measure;
    window_start_ = now_ns();
    window_end_ = window_start_ + seconds_to_ns(options_.duration);
    for (std::uint32_t i = 0; i < devices_.size(); ++i) restart_.push_back(i);
    std::uint64_t started = 0;
    while (now_ns() < window_end_) {
      const std::uint64_t now = now_ns();
      std::uint64_t budget = restart_.size();
      if (plan_.rate > 0) {
        const double allowed = plan_.rate * static_cast<double>(now - window_start_) / 1e9 + 1;
        budget = allowed > static_cast<double>(started)
                     ? static_cast<std::uint64_t>(allowed - static_cast<double>(started))
                     : 0;
      }
      while (budget > 0 && !restart_.empty()) {
        const std::uint32_t index = restart_.front();
        restart_.pop_front();
        --budget;
        ++started;
        const std::uint32_t slot = plan_.first_slot + next_rotation_++ % plan_.slot_count;
        start_open(index, slot);
      }
      poll_once(1);
    }
  }

  void hold_and_verify() {
    phase_ = Phase::hold;
    const std::uint64_t start = now_ns();
    const std::uint64_t hold_end = start + seconds_to_ns(options_.duration);
    std::uint64_t keepalive_cursor = 0;
    std::uint64_t rebind_cursor = 0;
    const auto count = static_cast<std::uint64_t>(devices_.size());
    while (now_ns() < hold_end) {
      const std::uint64_t now = now_ns();
      schedule_rebinds(start, now, rebind_cursor);
      if (options_.keepalive > 0) {
        // Spread keep-alives evenly: by time t, t / S * N of them are due.
        const auto due = static_cast<std::uint64_t>(static_cast<double>(now - start) / 1e9 /
                                                    options_.keepalive * static_cast<double>(count));
        while (keepalive_cursor < due) {
          const auto index = static_cast<std::uint32_t>(keepalive_cursor++ % count);
          if (devices_[index].state == DeviceState::open && devices_[index].pending.empty()) {
            send_request(index, Purpose::keepalive);
          }
        }
      }
      poll_once(options_.keepalive > 0 ? 2 : 20);
    }
    // Verify: every opened session must still answer on its existing session (no handshake).
    phase_ = Phase::verify;
    const std::uint64_t verify_start = now_ns();
    // With --setup-deadline an unanswered verify GET is asked again (verify_grace_asks times), so
    // the pass may take that much longer; a device that is asked nothing in time counts as failed.
    const double grace = options_.setup_deadline > 0 ? verify_grace_asks * options_.timeout : 0.0;
    const double allowance = std::max(static_cast<double>(count) / plan_.open_rate + options_.timeout + 30.0 + grace,
                                      options_.setup_deadline);
    const std::uint64_t deadline = verify_start + seconds_to_ns(allowance);
    const std::uint32_t in_flight = options_.verify_concurrency != 0 ? options_.verify_concurrency : options_.concurrency;
    std::uint32_t next = 0;
    std::deque<std::uint32_t> deferred;  // a request still in flight: asked once it is done
    const auto verify_one = [&](std::uint32_t index) {
      const Device& device = devices_[index];
      if (device.state == DeviceState::open) {
        if (send_request(index, Purpose::verify)) ++verifying_;
        else ++stats_.verify_failures;
      } else if (device.state == DeviceState::failed && device.generation > 0 && device_was_opened_[index]) {
        ++stats_.verify_failures;  // lost during the hold
      }
    };
    while ((next < devices_.size() || verifying_ > 0 || !deferred.empty()) && now_ns() < deadline) {
      const std::uint64_t now = now_ns();
      for (std::size_t k = deferred.size(); k > 0 && verifying_ < in_flight; --k) {
        const std::uint32_t index = deferred.front();
        deferred.pop_front();
        if (devices_[index].state == DeviceState::open && !devices_[index].pending.empty()) deferred.push_back(index);
        else verify_one(index);
      }
      const double allowed = plan_.open_rate * static_cast<double>(now - verify_start) / 1e9 + 1;
      while (next < devices_.size() && verifying_ < in_flight &&
             static_cast<double>(next) < allowed) {
        const std::uint32_t index = next++;
        if (plan_.first_slot + index < options_.verify_from) continue;  // must not touch the server again
        // A keep-alive still in flight is left to finish or time out first; the pass goes on.
        if (devices_[index].state == DeviceState::open && !devices_[index].pending.empty()) deferred.push_back(index);
        else verify_one(index);
      }
      const bool waiting = (next >= devices_.size() && deferred.empty()) || verifying_ >= in_flight;
      poll_once(waiting ? idle_wait_ms : 1);
    }
    // Out of time: whatever is in flight or was never asked did not prove its session.
    stats_.verify_failures += verifying_ + deferred.size();
    for (; next < devices_.size(); ++next) {
      if (plan_.first_slot + next >= options_.verify_from && device_was_opened_[next]) ++stats_.verify_failures;
    }
    verifying_ = 0;
  }

  // The first few devices of a process that did not answer the verify pass, on stderr, so that the
  // server's side of them can be looked up (/v1/sessions lists each session's address and CID).
  void report_lost_device(std::uint32_t index) {
    if (lost_reported_ >= 5) return;
    ++lost_reported_;
    const Device& device = devices_[index];
    sockaddr_in local{};
    socklen_t length = sizeof local;
    char address[INET_ADDRSTRLEN] = "?";
    if (device.fd >= 0 && getsockname(device.fd, reinterpret_cast<sockaddr*>(&local), &length) == 0)
      inet_ntop(AF_INET, &local.sin_addr, address, sizeof address);
    std::fprintf(stderr, "verify failed: slot %u from %s:%u cid %s, set-up attempts %u, channel lost %llu\n", device.slot,
                 address, static_cast<unsigned>(ntohs(local.sin_port)),
                 device.dtls ? device.dtls->connection_id().c_str() : "-", static_cast<unsigned>(device.failures) + 1,
                 static_cast<unsigned long long>(device.dtls ? device.dtls->lost() : 0));
  }

  // ---- devices -----------------------------------------------------------------------------

  bool open_socket(std::uint32_t index, std::uint32_t slot) {
    Device& device = devices_[index];
    close_device(device, false);
    SourceSpace space = space_;  // a retry: another alias of the slot's address (see retry_address_stride)
    space.first_address += device.failures % retry_address_classes * retry_address_stride;
    device.fd = open_device_socket(slot, space, server_);
    if (device.fd < 0) {
      ++stats_.errors;
      device.state = DeviceState::failed;
      return false;
    }
    device.slot = slot;
    ++device.generation;
    device.pending.clear();
    device.pending.reserve(options_.outstanding);
    device.started_ns = now_ns();
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u32 = index;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, device.fd, &event) != 0) {
      ++stats_.errors;
      close_device(device, false);
      device.state = DeviceState::failed;
      return false;
    }
    return true;
  }

  // Setup (and every handshake-mode cycle): socket, then handshake or first request.
  void start_open(std::uint32_t index, std::uint32_t slot) {
    ++opening_;
    if (!open_socket(index, slot)) return open_failed(index);
    Device& device = devices_[index];
    if (options_.dtls) {
      device.dtls = DtlsChannel::start(*context_, device.fd, options_.server,
                                       options_.identity_per_device
                                           ? options_.identity + "-" + std::to_string(slot)
                                           : std::string());
      if (!device.dtls) return open_failed(index);
      device.state = DeviceState::handshaking;
      sweep_later(index);
      return;
    }
    device.state = DeviceState::open;
    if (!send_request(index, Purpose::open)) open_failed(index);
  }

  void open_succeeded(std::uint32_t index) {
    --opening_;
    ++stats_.sessions_opened;
    devices_[index].state = DeviceState::open;
    device_was_opened_[index] = true;
  }

  void open_failed(std::uint32_t index) {
    if (phase_ == Phase::setup) {
      --opening_;
      Device& device = devices_[index];
      close_device(device, false);
      if (device.failures < UINT16_MAX) ++device.failures;
      if (const auto at = retry_.next_attempt(device.failures, now_ns(), draw_(random_))) {
        device.state = DeviceState::waiting;  // backs off, then a new ClientHello (--setup-deadline)
        retry_queue_.emplace(*at, index);
        ++stats_.retries;
        return;
      }
      ++stats_.open_failures;
      device.state = DeviceState::failed;
      return;
    }
    // Handshake mode: the slot goes on with a fresh session.
    close_device(devices_[index], false);
    devices_[index].state = DeviceState::failed;
    if (phase_ == Phase::measure && options_.mode == Mode::handshake) restart_.push_back(index);
  }

  void close_device(Device& device, bool notify) {
    if (device.dtls) {
      if (notify && device.state == DeviceState::open) device.dtls->close();
      device.dtls.reset();
    }
    if (device.fd >= 0) {
      close(device.fd);  // also leaves the epoll set
      device.fd = -1;
    }
    if (device.state != DeviceState::failed) device.state = DeviceState::closed;
    device.pending.clear();
  }

  bool send_request(std::uint32_t index, Purpose purpose) {
    Device& device = devices_[index];
    if (device.rebind_wanted && device.pending.empty() && device.state == DeviceState::open) rebind_device(index);
    std::array<std::byte, max_datagram> buffer{};
    const std::uint16_t message_id = device.next_message_id++;
    const std::uint32_t token = device.next_token++;
    const std::size_t size = build_get(request_, message_id, token, buffer);
    const std::span<const std::byte> datagram(buffer.data(), size);
    const bool sent = size > 0 && (device.dtls ? device.dtls->send(datagram)
                                               : PlainChannel(device.fd).send(datagram));
    if (!sent) {
      ++stats_.errors;
      return false;
    }
    device.pending.push_back({token, message_id, purpose, now_ns()});
    sweep_later(index);
    if (purpose == Purpose::measure) ++stats_.requests_sent;
    return true;
  }

  void on_readable(std::uint32_t index) {
    Device& device = devices_[index];
    const std::uint32_t generation = device.generation;
    std::array<std::byte, max_datagram> buffer{};
    for (int round = 0; round < 32 && device.fd >= 0 && device.generation == generation; ++round) {
      if (device.state == DeviceState::handshaking) {
        switch (device.dtls->continue_handshake()) {
          case HandshakeStatus::in_progress: return;
          case HandshakeStatus::failed:
            ++stats_.handshake_failures;
            return open_failed(index);
          case HandshakeStatus::done:
            on_handshake_done(index);
            continue;
        }
      }
      const ReceiveResult result =
          device.dtls ? device.dtls->receive(buffer) : PlainChannel(device.fd).receive(buffer);
      switch (result.status) {
        case ReceiveStatus::would_block: return;
        case ReceiveStatus::datagram:
          on_datagram(index, std::span<const std::byte>(buffer.data(), result.size));
          break;
        case ReceiveStatus::closed:
        case ReceiveStatus::error:
          return on_device_error(index);
      }
    }
  }

  void on_handshake_done(std::uint32_t index) {
    ++stats_.handshakes;
    Device& device = devices_[index];
    device.state = DeviceState::open;
    if (options_.mode == Mode::requests) return open_succeeded(index);
    const Purpose purpose = options_.mode == Mode::handshake ? Purpose::cycle : Purpose::open;
    if (!send_request(index, purpose)) open_failed(index);
  }

  void on_datagram(std::uint32_t index, std::span<const std::byte> datagram) {
    Device& device = devices_[index];
    if (options_.serve) {  // a downlink request from the gateway: answered at once
      std::array<std::byte, 64> out{};
      if (const std::size_t n = build_device_answer(datagram, device.next_message_id++, out)) {
        const std::span<const std::byte> bytes(out.data(), n);
        if (device.dtls ? device.dtls->send(bytes) : PlainChannel(device.fd).send(bytes)) ++stats_.downlinks_answered;
        return;
      }
    }
    const Answer answer = read_answer(datagram);
    if (answer.kind == AnswerKind::empty_ack || answer.kind == AnswerKind::other) return;
    if (answer.kind == AnswerKind::separate_response) {
      std::array<std::byte, 16> ack{};
      const std::size_t size = build_empty_ack(answer.message_id, ack);
      const std::span<const std::byte> bytes(ack.data(), size);
      if (device.dtls) device.dtls->send(bytes);
      else PlainChannel(device.fd).send(bytes);
    }
    const bool by_message_id = answer.kind == AnswerKind::reset;
    const auto it = std::find_if(device.pending.begin(), device.pending.end(), [&](const Pending& p) {
      return by_message_id ? p.message_id == answer.message_id : p.token == answer.token;
    });
    if (it == device.pending.end()) return;  // late answer to a request already timed out
    const Pending pending = *it;
    device.pending.erase(it);
    if (answer.kind == AnswerKind::reset) {
      ++stats_.errors;
      return on_request_failed(index, pending);
    }
    on_request_done(index, pending, answer.code);
  }

  void on_request_done(std::uint32_t index, const Pending& pending, std::uint8_t code) {
    const std::uint64_t now = now_ns();
    const std::uint64_t latency_us = (now - pending.sent_ns) / 1000;
    switch (pending.purpose) {
      case Purpose::open:
        return open_succeeded(index);
      case Purpose::measure:
        if (phase_ != Phase::measure || now >= window_end_) return;
        ++stats_.responses;
        if (code >> 5 == 2) ++stats_.responses_2xx;
        else if (code >> 5 == 4) ++stats_.responses_4xx;
        else if (code >> 5 == 5) ++stats_.responses_5xx;
        stats_.latency.record_us(latency_us);
        ready_.push_back(index);
        return;
      case Purpose::keepalive:
        ++stats_.keepalives;
        stats_.latency.record_us(latency_us);
        return;
      case Purpose::verify:
        --verifying_;
        ++stats_.verified;
        stats_.latency.record_us(latency_us);
        return;
      case Purpose::cycle: {
        Device& device = devices_[index];
        if (phase_ == Phase::measure && now < window_end_) {
          ++stats_.cycles;
          stats_.latency.record_us((now - device.started_ns) / 1000);
        }
        close_device(device, true);
        restart_.push_back(index);
        return;
      }
    }
  }

  // A request that timed out or was reset; the session itself may still be fine.
  void on_request_failed(std::uint32_t index, const Pending& pending) {
    switch (pending.purpose) {
      case Purpose::open:
        // --setup-deadline: the session is there, only the answer is late; ask again on it.
        if (retry_.deadline_ns != 0 && now_ns() < retry_.deadline_ns &&
            devices_[index].state == DeviceState::open && send_request(index, Purpose::open)) {
          ++stats_.resends;
          return;
        }
        return open_failed(index);
      case Purpose::measure:
        if (phase_ == Phase::measure) ready_.push_back(index);
        return;
      case Purpose::keepalive:
        ++stats_.keepalive_failures;
        return;
      case Purpose::verify:
        // --setup-deadline: a lost datagram is not a lost session; ask again on it, a few times.
        if (options_.setup_deadline > 0 && devices_[index].verify_asks < verify_grace_asks &&
            devices_[index].state == DeviceState::open && send_request(index, Purpose::verify)) {
          ++devices_[index].verify_asks;
          ++stats_.resends;
          return;
        }
        --verifying_;
        ++stats_.verify_failures;
        if (devices_[index].dtls && devices_[index].dtls->lost() > 0) ++stats_.verify_failures_lost;
        report_lost_device(index);
        return;
      case Purpose::cycle:
        return open_failed(index);
    }
  }

  void on_device_error(std::uint32_t index) {
    Device& device = devices_[index];
    ++stats_.errors;
    if (device.state == DeviceState::handshaking) {
      ++stats_.handshake_failures;
      return open_failed(index);
    }
    const std::vector<Pending> pending = std::move(device.pending);
    device.pending.clear();
    const bool in_setup = phase_ == Phase::setup;
    close_device(device, false);
    device.state = DeviceState::failed;
    bool open_reported = false;
    for (const auto& p : pending) {
      if (p.purpose == Purpose::measure) continue;  // the session is gone, no refill
      if (p.purpose == Purpose::open || p.purpose == Purpose::cycle) open_reported = true;
      on_request_failed(index, p);
    }
    if (in_setup && !open_reported && options_.mode == Mode::hold) open_failed(index);
  }

  // The sweep visits only the devices that have a timer: a handshake in progress or a request
  // waiting for its answer. With 20,000 devices per process, most of them quiet, a sweep of all of
  // them every interval was the bench's largest cost in a million-device run.
  void sweep_later(std::uint32_t index) {
    Device& device = devices_[index];
    if (device.swept) return;
    device.swept = true;
    swept_.push_back(index);
  }

  void sweep(std::uint64_t now) {
    std::vector<std::uint32_t> list;
    list.swap(swept_);  // what the visits below put back (or add) lands in swept_
    for (const auto index : list) devices_[index].swept = false;
    for (const auto index : list) {
      sweep_device(index, now);
      const Device& device = devices_[index];
      if (device.state == DeviceState::handshaking || !device.pending.empty()) sweep_later(index);
    }
  }

  void sweep_device(std::uint32_t index, std::uint64_t now) {
    const std::uint64_t timeout = seconds_to_ns(options_.timeout);
    const std::uint64_t handshake_timeout = seconds_to_ns(options_.handshake_timeout);
    Device& device = devices_[index];
    if (device.state == DeviceState::handshaking) {
      if (now - device.started_ns > handshake_timeout) {
        ++stats_.handshake_failures;
        open_failed(index);
      } else {
        device.dtls->on_timer();
      }
      return;
    }
    for (std::size_t i = 0; i < device.pending.size();) {
      // A request sent during this sweep (a first GET asked again) is newer than `now`.
      if (device.pending[i].sent_ns >= now || now - device.pending[i].sent_ns <= timeout) {
        ++i;
        continue;
      }
      const Pending pending = device.pending[i];
      device.pending.erase(device.pending.begin() + static_cast<std::ptrdiff_t>(i));
      if (pending.purpose == Purpose::measure && phase_ == Phase::measure) ++stats_.timeouts;
      const std::uint32_t generation = device.generation;
      on_request_failed(index, pending);
      if (device.generation != generation || device.fd < 0) break;
    }
  }

  void poll_once(int timeout_ms) {
    std::array<epoll_event, 1024> events{};
    const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout_ms);
    for (int i = 0; i < n; ++i) {
      const std::uint32_t index = events[static_cast<std::size_t>(i)].data.u32;
      if (index < devices_.size() && devices_[index].fd >= 0) on_readable(index);
    }
    const std::uint64_t now = now_ns();
    if (now - last_sweep_ >= sweep_interval_ns) {
      last_sweep_ = now;
      sweep(now);
    }
  }

  // Handshake retransmission timers are 1 s and more, request timeouts seconds: 50 ms is fine enough.
  static constexpr std::uint64_t sweep_interval_ns = 50'000'000;
  static constexpr int idle_wait_ms = 20;  // longest epoll wait while something may become due

  const Options& options_;
  const WorkerPlan plan_;
  const sockaddr_in server_;
  const SourceSpace space_;
  std::unique_ptr<DtlsClientContext> context_;
  const RequestTemplate request_;
  std::vector<Device> devices_;
  std::vector<bool> device_was_opened_;
  std::vector<std::uint32_t> swept_;  // devices the next sweep visits (sweep_later)
  std::deque<std::uint32_t> ready_;    // requests mode: one entry per free request slot
  std::deque<std::uint32_t> restart_;  // handshake mode: slots waiting for a new session
  std::deque<std::pair<std::uint64_t, int>> retired_;  // --rebind-hold: (close at, fd) of old sockets
  RetryPolicy retry_;  // deadline 0 (no retries) unless --setup-deadline
  // (due, device) of devices backing off, earliest first.
  using Due = std::pair<std::uint64_t, std::uint32_t>;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> retry_queue_;
  std::minstd_rand random_;
  std::uniform_real_distribution<double> draw_{0.0, 1.0};
  std::uint32_t next_rotation_ = 0;
  std::uint32_t opening_ = 0;
  std::uint32_t verifying_ = 0;
  std::uint32_t lost_reported_ = 0;
  Phase phase_ = Phase::setup;
  std::uint64_t window_start_ = 0;
  std::uint64_t window_end_ = 0;
  std::uint64_t last_sweep_ = 0;
  int epoll_fd_ = -1;
  RunStats stats_;
};

}  // namespace

int run_worker(const Options& options, const WorkerPlan& plan, int report_fd, int go_fd) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the parent, even when it is killed
  const auto server = parse_ipv4_endpoint(options.server);
  const auto first_address = parse_ipv4(options.source_base);
  if (!server || !first_address) return 1;
  std::unique_ptr<DtlsClientContext> context;
  if (options.dtls) {
    std::string error;
    context = DtlsClientContext::create(options.cipher, options.identity, options.key, options.cid, error,
                                        options.handshake_timeout);
    if (!context) {
      std::fprintf(stderr, "coapgw-bench: %s\n", error.c_str());
      return 1;
    }
    context->set_identities(options.identities);
  }
  Worker worker(options, plan, *server, SourceSpace{*first_address, options.source_port_base},
                std::move(context));
  return worker.run(report_fd, go_fd);
}

}  // namespace coapgw::bench
