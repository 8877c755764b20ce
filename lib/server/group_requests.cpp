// Group requests (multicast, RFC 7252 §8); see group_requests.hpp.
#include "server/group_requests.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/multicast.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <array>
#include <cstring>
#include <thread>
#include <unordered_map>

#include <prometheus/counter.h>

#include "coap/message.hpp"
#include "exchange/layer.hpp"
#include "metrics/metrics.hpp"
#include "server/device_links.hpp"
#include "session/table.hpp"

namespace coapgw::server {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using error_code = boost::system::error_code;

bool GroupCollector::add(api::DownlinkAnswer answer) {
  if (responses_.size() >= max_ || !responders_.insert(answer.remote).second) return false;
  responses_.push_back(std::move(answer));
  return true;
}

namespace {

asio::ip::address ip_of(const Address& a) {
  if (a.is_v4()) {
    asio::ip::address_v4::bytes_type b;
    std::memcpy(b.data(), a.ip_bytes(), 4);
    return asio::ip::address_v4(b);
  }
  asio::ip::address_v6::bytes_type b;
  std::memcpy(b.data(), a.ip_bytes(), 16);
  return asio::ip::address_v6(b, a.scope_id());
}

Address address_of(const udp::endpoint& e) { return Address::from_sockaddr(e.data()); }

// The index of the interface that holds IPv6 address `a` (IPV6_MULTICAST_IF takes an index); 0: none.
unsigned interface_index_of(const Address& a) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return 0;
  unsigned index = 0;
  for (auto* i = list; i != nullptr && index == 0; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET6) continue;
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
    if (std::memcmp(sin6->sin6_addr.s6_addr, a.ip_bytes(), 16) == 0) index = ::if_nametoindex(i->ifa_name);
  }
  ::freeifaddrs(list);
  return index;
}

api::GroupResult refused(std::string reason) {
  api::GroupResult r;
  r.ok = false;
  r.reason = std::move(reason);
  return r;
}

}  // namespace

class GroupRequests::Impl final : public exchange::Sink {
 public:
  Impl(GroupSettings settings, metrics::Metrics& metrics)
      : settings_(std::move(settings)),
        metrics_(metrics),
        budget_(settings_.max_in_flight),
        table_(nullptr, budget_, session::Table::Settings{}),
        layer_(layer_settings(settings_), *this, exchange::system_random()) {
    thread_ = std::thread([this] { io_.run(); });
  }

  ~Impl() {
    work_.reset();
    io_.stop();
    thread_.join();
    // The thread is gone: what still collects is dropped here, on this thread.
    for (auto& [id, call] : calls_) end(*call);
    calls_.clear();
  }

  void send(api::GroupRequest request, std::function<void(api::GroupResult)> done) {
    asio::post(io_, [this, request = std::move(request), done = std::move(done)]() mutable {
      start(std::move(request), std::move(done));
    });
  }

 private:
  struct Call {
    explicit Call(asio::io_context& io, std::size_t max) : socket(io), wait(io), collected(max) {}
    udp::socket socket;
    asio::steady_timer wait;
    session::Session* session = nullptr;
    exchange::Token token = 0;
    GroupCollector collected;
    std::function<void(api::GroupResult)> done;
    std::array<std::byte, 2048> buffer{};
    udp::endpoint from;
    bool ended = false;
  };

  static exchange::LayerSettings layer_settings(const GroupSettings& s) {
    exchange::LayerSettings l;
    l.client.max_exchanges = s.max_in_flight;
    return l;
  }

  void refuse(const std::function<void(api::GroupResult)>& done, std::string reason) {
    metrics_.group_requests(false).Increment();
    done(refused(std::move(reason)));
  }

  // The socket: bound to the interface's address, multicast out of that interface, hop limit, loopback.
  error_code open(udp::socket& socket, const Address& group) {
    error_code ec;
    const bool v6 = group.is_v6();
    socket.open(v6 ? udp::v6() : udp::v4(), ec);
    if (ec) return ec;
    const auto local = settings_.interface ? ip_of(*settings_.interface)
                                           : (v6 ? asio::ip::address(asio::ip::address_v6::any())
                                                 : asio::ip::address(asio::ip::address_v4::any()));
    socket.bind(udp::endpoint(local, 0), ec);
    if (!ec) socket.set_option(asio::ip::multicast::hops(static_cast<int>(settings_.hops)), ec);
    if (!ec) socket.set_option(asio::ip::multicast::enable_loopback(true), ec);
    if (!ec && settings_.interface) {
      if (v6)
        socket.set_option(asio::ip::multicast::outbound_interface(interface_index_of(*settings_.interface)), ec);
      else
        socket.set_option(asio::ip::multicast::outbound_interface(local.to_v4()), ec);
    }
    return ec;
  }

  void start(api::GroupRequest request, std::function<void(api::GroupResult)> done) {
    if (calls_.size() >= settings_.max_in_flight)
      return refuse(done, "too many group requests in flight (api.groups.max_in_flight)");
    if (request.request.payload.size() > settings_.max_payload)
      return refuse(done, "the payload does not fit one message (no block-wise transfer to a group)");
    if (settings_.interface && settings_.interface->is_v6() != request.group.is_v6())
      return refuse(done, "api.groups.interface is not of the group's address family");
    auto call = std::make_shared<Call>(io_, settings_.max_responses);
    if (auto ec = open(call->socket, request.group))
      return refuse(done, "cannot send to the group: " + ec.message());
    const auto now = session::Clock::now();
    const Address local = address_of(call->socket.local_endpoint());
    auto* s = table_.create_client(session::Key{request.group, local.port(), session::Proto::udp}, local, now);
    if (s == nullptr) return refuse(done, "too many group requests in flight (api.groups.max_in_flight)");
    s->set_addr_mcast(request.group);
    s->set_state(session::State::established);
    call->session = s;
    call->done = std::move(done);
    const std::uint64_t id = s->id();
    calls_.emplace(id, call);  // before the layer sends through send() below
    exchange::Request req = to_exchange_request(request.request);
    req.type = coap::Type::non;
    req.multi = true;
    auto token = layer_.client().start(
        *s, std::move(req), [this, id](exchange::Result r) { on_result(id, std::move(r)); }, now, false);
    if (!token) {
      calls_.erase(id);
      end(*call);
      return refuse(call->done, "too many group requests in flight (api.groups.max_in_flight)");
    }
    call->token = *token;
    metrics_.group_requests(true).Increment();
    receive(id, call);
    call->wait.expires_after(request.wait);
    call->wait.async_wait([this, id](error_code ec) {
      if (!ec) finish(id);
    });
    arm_timer();
  }

  void receive(std::uint64_t id, const std::shared_ptr<Call>& call) {
    call->socket.async_receive_from(asio::buffer(call->buffer), call->from,
                                    [this, id, call](error_code ec, std::size_t n) {
                                      if (ec || call->ended) return;
                                      on_datagram(*call, n);
                                      if (!call->ended) receive(id, call);
                                    });
  }

  void on_datagram(Call& call, std::size_t n) {
    coap::MessageView m;
    if (coap::parse(std::span<const std::byte>(call.buffer.data(), n), m) != coap::ParseError::ok) return;
    // The answer's responder is the session's remote while the layer handles it (an ACK for a CON
    // answer goes there); the group is the remote again for whatever is sent next.
    call.session->set_addr_remote_responder(address_of(call.from));
    layer_.on_message(*call.session, m, session::Clock::now());
    if (!call.ended) call.session->reset_remote_to_mcast();
    arm_timer();
  }

  void on_result(std::uint64_t id, exchange::Result result) {
    const auto it = calls_.find(id);
    if (it == calls_.end()) return;
    auto& call = *it->second;
    if (result.failure) {
      // The registration ended (e.g. an RST): what was heard so far is the answer.
      asio::post(io_, [this, id] { finish(id); });
      return;
    }
    const bool kept = call.collected.add(to_downlink_result(std::move(result), *call.session).answer);
    metrics_.group_responses(kept).Increment();
  }

  void finish(std::uint64_t id) {
    const auto it = calls_.find(id);
    if (it == calls_.end()) return;
    auto call = it->second;
    calls_.erase(it);
    end(*call);
    api::GroupResult r;
    r.responses = call->collected.take();
    call->done(std::move(r));
    arm_timer();
  }

  // Stops collecting: the registration is dropped, the socket closed, the session released.
  void end(Call& call) {
    call.ended = true;
    if (call.token != 0) layer_.client().cancel(call.token);
    error_code ignored;
    call.socket.close(ignored);
    call.wait.cancel();
    if (call.session != nullptr) call.session->release();  // refcount 1 from create_client: freed
    call.session = nullptr;
  }

  // The layer's one timer (Block2 follow-ups of an answer are CONs).
  void arm_timer() {
    const auto due = layer_.next_deadline();
    if (!due) return;
    layer_timer_.expires_at(*due);
    layer_timer_.async_wait([this](error_code ec) {
      if (ec) return;
      layer_.on_timer(session::Clock::now());
      arm_timer();
    });
  }

  // exchange::Sink: to the group, or to the responder whose answer is being handled.
  exchange::SendResult send(session::Session& s, std::span<const std::byte> message) override {
    const auto it = calls_.find(s.id());
    if (it == calls_.end()) return exchange::SendResult::refused;
    error_code ec;
    it->second->socket.send_to(asio::buffer(message.data(), message.size()),
                               udp::endpoint(ip_of(s.addr_remote()), s.addr_remote().port()), 0, ec);
    return ec ? exchange::SendResult::refused : exchange::SendResult::sent;
  }

  // Declared first: destroyed last, after every socket and timer on it.
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  GroupSettings settings_;
  metrics::Metrics& metrics_;
  session::Budget budget_;
  session::Table table_;
  exchange::Layer layer_;  // after table_: its exchanges release sessions when it goes
  asio::steady_timer layer_timer_{io_};
  std::unordered_map<std::uint64_t, std::shared_ptr<Call>> calls_;  // by session id
  std::thread thread_;
};

GroupRequests::GroupRequests(GroupSettings settings, metrics::Metrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(settings), metrics)) {}
GroupRequests::~GroupRequests() = default;

void GroupRequests::send(api::GroupRequest request, std::function<void(api::GroupResult)> done) {
  impl_->send(std::move(request), std::move(done));
}

}  // namespace coapgw::server
