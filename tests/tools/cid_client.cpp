// coapgw-cid-client — a DTLS 1.2 PSK device for the integration tests that speaks RFC 9146
// Connection IDs: our dtls::Engine in the client role (which offers the connection_id extension)
// on a UDP socket, driven by commands on stdin, one JSON line per command on stdout:
//   connect           handshake from a fresh socket      {"ok":true,"cid":"<server's CID, hex>","port":P,"resumed":false}
//   resume            likewise, offering the session ticket of the last connect (RFC 5077): "resumed" says
//                     whether the server took it (an abbreviated handshake)
//   get <path>        CON GET, waits for the answer      {"ok":true,"code":"2.05","payload":"...","port":P}
//   rebind            a new socket (new source port)     {"ok":true,"port":P}; the old one stays
//                     open (unread) until quit, so no later rebind, of this or another client, is
//                     given a port a balancer may still map to this session (a NAT's hold-down)
//   replay            the last request's datagram again  {"ok":true,"answered":false}
//   forge             the last request's datagram with its tag broken, likewise
//   quit
// Options: --server HOST:PORT --identity ID --key KEY [--no-cid] [--timeout-ms N].
// With --no-cid the extension is not offered (a plain DTLS peer). Loopback test tool, IPv4 only.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "coap/message.hpp"
#include "common/address.hpp"
#include "dtls/client_context.hpp"

namespace {

using namespace coapgw;
using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::byte>;

struct Options {
  std::string server = "127.0.0.1:5684";
  std::string identity, key;
  bool cid = true;
  int timeout_ms = 5000;
};

std::string hex(std::span<const std::byte> b) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (auto x : b) {
    s += digits[std::to_integer<int>(x) >> 4];
    s += digits[std::to_integer<int>(x) & 15];
  }
  return s;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

class Device {
 public:
  Device(Options options, std::unique_ptr<dtls::ClientContext> context, sockaddr_in server)
      : options_(std::move(options)), context_(std::move(context)), server_(server) {}
  ~Device() {
    if (fd_ >= 0) ::close(fd_);
    for (int fd : retired_) ::close(fd);
  }

  bool rebind() {
    if (fd_ >= 0) retired_.push_back(fd_);
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&any), sizeof any) == 0;
  }
  int port() const {
    sockaddr_in a{};
    socklen_t n = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &n);
    return ntohs(a.sin_port);
  }

  std::string connect(bool resume = false) {
    if (!rebind()) return error("socket");
    dtls::Output out;
    engine_ = context_->connect(peer(), out, Clock::now(), resume ? std::span<const std::byte>(resumption_)
                                                                  : std::span<const std::byte>());
    if (!engine_) return error("connect refused");
    send_all(out);
    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeout_ms);
    while (engine_->state() == dtls::Engine::State::handshake && Clock::now() < deadline) {
      pump(deadline, nullptr);
    }
    if (engine_->state() != dtls::Engine::State::established) return error("handshake failed");
    if (!engine_->resumption().empty()) resumption_ = engine_->resumption();
    return "{\"ok\":true,\"cid\":" + json_string(hex(engine_->peer_connection_id())) +
           ",\"port\":" + std::to_string(port()) + ",\"resumed\":" + (engine_->resumed() ? "true" : "false") + "}";
  }

  std::string get(const std::string& path) {
    if (!engine_ || engine_->state() != dtls::Engine::State::established) return error("not connected");
    std::array<std::byte, 1024> buffer{};
    coap::MessageWriter w(buffer);
    const std::uint16_t mid = next_mid_++;
    const std::byte token[2] = {static_cast<std::byte>(mid >> 8), static_cast<std::byte>(mid & 0xff)};
    w.header(coap::Type::con, 1, mid, token);
    std::stringstream parts(path);
    for (std::string part; std::getline(parts, part, '/');) {
      if (!part.empty()) w.option_string(11, part);
    }
    dtls::Output out;
    if (!engine_->send(w.bytes(), out) || out.datagrams.empty()) return error("send failed");
    last_request_ = out.datagrams.front();
    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeout_ms);
    auto next_retransmit = Clock::now() + std::chrono::milliseconds(1000);
    send_all(out);
    while (Clock::now() < deadline) {
      std::optional<std::string> answer;
      pump(std::min(deadline, next_retransmit), &answer, mid);
      if (answer) return *answer;
      if (Clock::now() >= next_retransmit) {  // CoAP retransmission: the same message in a new record
        dtls::Output again;
        if (engine_->send(w.bytes(), again) && !again.datagrams.empty()) last_request_ = again.datagrams.front();
        send_all(again);
        next_retransmit = Clock::now() + std::chrono::milliseconds(1000);
      }
    }
    return error("no answer");
  }

  // Sends the last request's record again (replayed) or with a broken tag (forged), and reports
  // whether anything came back within a second.
  std::string resend(bool forge) {
    if (last_request_.empty()) return error("no request yet");
    Bytes d = last_request_;
    if (forge) d.back() ^= std::byte{0x5a};
    send_raw(d);
    const auto deadline = Clock::now() + std::chrono::milliseconds(1000);
    bool answered = false;
    while (Clock::now() < deadline) {
      std::optional<std::string> answer;
      pump(deadline, &answer, std::nullopt);
      if (answer) answered = true;
    }
    return std::string("{\"ok\":true,\"answered\":") + (answered ? "true" : "false") + "}";
  }

 private:
  Address peer() const {
    std::array<std::uint8_t, 4> ip{};
    std::memcpy(ip.data(), &server_.sin_addr.s_addr, 4);
    return Address::v4(ip, ntohs(server_.sin_port));
  }
  static std::string error(const std::string& why) { return "{\"ok\":false,\"error\":" + json_string(why) + "}"; }

  void send_raw(const Bytes& d) {
    ::sendto(fd_, d.data(), d.size(), 0, reinterpret_cast<const sockaddr*>(&server_), sizeof server_);
  }
  void send_all(dtls::Output& out) {
    for (const auto& d : out.datagrams) send_raw(d);
  }

  // Waits for one datagram (or the engine's timer) until `until`; an answer to `mid` (any
  // answer when mid is unset) goes to *answer.
  void pump(Clock::time_point until, std::optional<std::string>* answer, std::optional<std::uint16_t> mid = {}) {
    auto wake = until;
    if (auto t = engine_->next_timer(); t && *t < wake) wake = *t;
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now()).count();
    pollfd p{fd_, POLLIN, 0};
    dtls::Output out;
    if (::poll(&p, 1, static_cast<int>(std::max<long long>(0, wait))) > 0) {
      std::array<std::byte, 2048> buffer{};
      const auto n = ::recv(fd_, buffer.data(), buffer.size(), 0);
      if (n > 0) engine_->on_datagram(std::span(buffer.data(), static_cast<std::size_t>(n)), out, Clock::now());
    } else {
      engine_->on_timer(out, Clock::now());
    }
    send_all(out);
    for (const auto& plain : out.plaintexts) {
      coap::MessageView m;
      if (coap::parse(plain, m) != coap::ParseError::ok || answer == nullptr) continue;
      if (m.type == coap::Type::ack && m.code == 0) continue;  // empty ACK: a separate answer follows
      if (mid && m.type == coap::Type::ack && m.message_id != *mid) continue;
      if (m.type == coap::Type::con) {  // a separate answer: acknowledge it
        std::array<std::byte, 8> ack{};
        coap::MessageWriter w(ack);
        w.header(coap::Type::ack, 0, m.message_id, {});
        dtls::Output o;
        engine_->send(w.bytes(), o);
        send_all(o);
      }
      char code[8];
      std::snprintf(code, sizeof code, "%d.%02d", m.code >> 5, m.code & 31);
      *answer = std::string("{\"ok\":true,\"code\":\"") + code + "\",\"payload\":" +
                json_string(std::string(reinterpret_cast<const char*>(m.payload.data()), m.payload.size())) +
                ",\"port\":" + std::to_string(port()) + "}";
    }
  }

  Options options_;
  std::unique_ptr<dtls::ClientContext> context_;
  sockaddr_in server_;
  int fd_ = -1;
  std::vector<int> retired_;  // sockets of earlier rebinds: their ports stay taken
  std::unique_ptr<dtls::Engine> engine_;
  Bytes last_request_;
  SecretBytes resumption_;  // the last session and its ticket
  std::uint16_t next_mid_ = 0x4000;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--server") o.server = value();
    else if (a == "--identity") o.identity = value();
    else if (a == "--key") o.key = value();
    else if (a == "--no-cid") o.cid = false;
    else if (a == "--timeout-ms") o.timeout_ms = std::stoi(value());
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  const auto server = Address::parse(o.server);
  if (!server || server->is_v6()) {
    std::cerr << "--server must be an IPv4 HOST:PORT\n";
    return 2;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(server->port());
  std::memcpy(&to.sin_addr.s_addr, server->ip_bytes(), 4);
  dtls::ClientSettings settings;
  settings.psk_identity = o.identity;
  settings.psk_key = o.key;
  if (o.cid) settings.connection_id = std::vector<std::byte>{};  // offer; ask for plain records to us
  settings.session_tickets = true;  // keeps the server's ticket for `resume`
  std::string error;
  auto context = dtls::ClientContext::create(std::move(settings), &error);
  if (!context) {
    std::cerr << error << "\n";
    return 2;
  }
  Device device(o, std::move(context), to);
  for (std::string line; std::getline(std::cin, line);) {
    std::istringstream words(line);
    std::string command, argument;
    words >> command >> argument;
    std::string reply;
    if (command == "connect") reply = device.connect();
    else if (command == "resume") reply = device.connect(true);
    else if (command == "get") reply = device.get(argument);
    else if (command == "rebind") reply = device.rebind() ? "{\"ok\":true,\"port\":" + std::to_string(device.port()) + "}"
                                                          : "{\"ok\":false,\"error\":\"socket\"}";
    else if (command == "replay") reply = device.resend(false);
    else if (command == "forge") reply = device.resend(true);
    else if (command == "quit") break;
    else reply = "{\"ok\":false,\"error\":\"unknown command\"}";
    std::cout << reply << std::endl;
  }
  return 0;
}
