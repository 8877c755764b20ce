// RFC 6455 server side for RFC 8323 §4; see ws_filter.hpp.
#include "transport/ws_filter.hpp"

#include <openssl/evp.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <algorithm>
#include <array>

namespace coapgw::transport {

namespace http = boost::beast::http;

namespace {

constexpr std::uint8_t op_continuation = 0x0, op_text = 0x1, op_binary = 0x2, op_close = 0x8, op_ping = 0x9,
                       op_pong = 0xA;
constexpr std::uint16_t close_protocol = 1002, close_unsupported = 1003, close_too_big = 1009;

void append(std::vector<std::byte>& out, std::string_view text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  out.insert(out.end(), p, p + text.size());
}

// Sec-WebSocket-Accept: base64(SHA-1(key + the RFC 6455 GUID)).
std::string accept_of(std::string_view key) {
  const std::string input = std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int n = 0;
  EVP_Digest(input.data(), input.size(), digest.data(), &n, EVP_sha1(), nullptr);
  std::array<unsigned char, 64> b64{};
  const int len = EVP_EncodeBlock(b64.data(), digest.data(), static_cast<int>(n));
  return std::string(reinterpret_cast<const char*>(b64.data()), static_cast<std::size_t>(len));
}

bool lists_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item == token) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

struct WsFilter::Upgrade {
  http::request_parser<http::empty_body> parser;
};

WsFilter::WsFilter(std::size_t max_message_size, std::string path)
    : upgrade_(std::make_unique<Upgrade>()), max_message_size_(max_message_size), path_(std::move(path)) {
  upgrade_->parser.header_limit(max_upgrade_request);
  upgrade_->parser.body_limit(0);
}

WsFilter::~WsFilter() = default;

WsFilter::Status WsFilter::on_bytes(std::span<const std::byte> in, std::vector<std::vector<std::byte>>& messages,
                                    std::vector<std::byte>& out) {
  if (status_ == Status::failed || status_ == Status::closed) return status_;
  if (buffer_.size() + in.size() > max_upgrade_request + max_message_size_ + 14) {
    fail(close_too_big, "frame too large", out);
    return status_;
  }
  buffer_.insert(buffer_.end(), in.begin(), in.end());
  if (status_ == Status::upgrading) upgrade(out);
  if (status_ == Status::open) frames(messages, out);
  return status_;
}

void WsFilter::upgrade(std::vector<std::byte>& out) {
  auto& parser = upgrade_->parser;
  boost::system::error_code ec;
  const std::size_t used = parser.put(boost::asio::buffer(buffer_.data(), buffer_.size()), ec);
  // The parser keeps what it consumed (the start line, say) even when it needs more.
  buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(used));
  upgrade_bytes_ += used;
  if (ec == http::error::need_more) {
    if (upgrade_bytes_ + buffer_.size() > max_upgrade_request) {
      append(out, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      status_ = Status::failed;
      error_ = "upgrade request too large";
    }
    return;
  }
  const auto& req = parser.get();
  auto field = [&](http::field f) {
    const auto v = req[f];
    return std::string_view(v.data(), v.size());
  };
  const std::string_view key = field(http::field::sec_websocket_key);
  std::string_view refusal;
  if (ec) refusal = "400 Bad Request";
  else if (std::string_view(req.target().data(), req.target().size()) != path_) refusal = "404 Not Found";
  else if (!boost::beast::websocket::is_upgrade(req) || key.empty() || field(http::field::sec_websocket_version) != "13")
    refusal = "400 Bad Request";
  else if (!lists_token(field(http::field::sec_websocket_protocol), "coap")) refusal = "400 Bad Request";
  if (!refusal.empty()) {
    append(out, "HTTP/1.1 " + std::string(refusal) + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    status_ = Status::failed;
    error_ = ec ? "bad upgrade request: " + ec.message() : "refused upgrade: " + std::string(refusal);
    return;
  }
  append(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
                  accept_of(key) + "\r\nSec-WebSocket-Protocol: coap\r\n\r\n");
  upgrade_.reset();
  status_ = Status::open;
}

void WsFilter::frames(std::vector<std::vector<std::byte>>& messages, std::vector<std::byte>& out) {
  std::size_t at = 0;
  auto byte = [&](std::size_t i) { return std::to_integer<std::uint8_t>(buffer_[at + i]); };
  while (status_ == Status::open && buffer_.size() - at >= 2) {
    const std::size_t have = buffer_.size() - at;
    const std::uint8_t b0 = byte(0), b1 = byte(1);
    const std::uint8_t opcode = b0 & 0x0F;
    const bool fin = (b0 & 0x80) != 0;
    if ((b0 & 0x70) != 0 || (b1 & 0x80) == 0) return fail(close_protocol, "reserved bits or unmasked frame", out);
    std::size_t header = 2;
    std::uint64_t length = b1 & 0x7F;
    if (length == 126) header = 4;
    if (length == 127) header = 10;
    if (have < header + 4) break;
    if (length >= 126) {
      length = 0;
      for (std::size_t i = 2; i < header; ++i) length = (length << 8) | byte(i);
    }
    const bool control = (opcode & 0x08) != 0;
    if (control && (!fin || length > 125)) return fail(close_protocol, "bad control frame", out);
    // Compared without adding to `length` (a 64-bit length from the peer must not wrap anything).
    if (!control && length > max_message_size_ - std::min(max_message_size_, message_.size()))
      return fail(close_too_big, "message too large", out);
    if (have < header + 4 + length) break;
    std::array<std::byte, 4> mask;
    std::copy_n(buffer_.begin() + static_cast<std::ptrdiff_t>(at + header), 4, mask.begin());
    std::vector<std::byte> payload(buffer_.begin() + static_cast<std::ptrdiff_t>(at + header + 4),
                                   buffer_.begin() + static_cast<std::ptrdiff_t>(at + header + 4 + length));
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] ^= mask[i % 4];
    at += header + 4 + length;
    switch (opcode) {
      case op_ping: frame(op_pong, payload, out); break;
      case op_pong: break;
      case op_close:
        if (!close_sent_) frame(op_close, std::span(payload).first(std::min<std::size_t>(2, payload.size())), out);
        close_sent_ = true;
        status_ = Status::closed;
        break;
      case op_text: return fail(close_unsupported, "text message (RFC 8323 §4: binary only)", out);
      case op_binary:
      case op_continuation:
        if ((opcode == op_binary) == in_message_) return fail(close_protocol, "bad fragment sequence", out);
        message_.insert(message_.end(), payload.begin(), payload.end());
        in_message_ = !fin;
        if (fin) messages.push_back(std::exchange(message_, {}));
        break;
      default: return fail(close_protocol, "reserved opcode", out);
    }
  }
  buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(at));
}

void WsFilter::frame(std::uint8_t opcode, std::span<const std::byte> payload, std::vector<std::byte>& out) {
  out.push_back(std::byte{static_cast<std::uint8_t>(0x80 | opcode)});
  const std::size_t n = payload.size();
  if (n < 126) {
    out.push_back(std::byte{static_cast<std::uint8_t>(n)});
  } else if (n <= 0xFFFF) {
    out.push_back(std::byte{126});
    for (int shift : {8, 0}) out.push_back(std::byte{static_cast<std::uint8_t>(n >> shift)});
  } else {
    out.push_back(std::byte{127});
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(std::byte{static_cast<std::uint8_t>(std::uint64_t{n} >> shift)});
  }
  out.insert(out.end(), payload.begin(), payload.end());
}

bool WsFilter::write(std::span<const std::byte> message, std::vector<std::byte>& out) {
  if (status_ != Status::open || close_sent_) return false;
  frame(op_binary, message, out);
  return true;
}

void WsFilter::close(std::uint16_t code, std::vector<std::byte>& out) {
  if (close_sent_ || status_ == Status::upgrading || status_ == Status::failed) return;
  close_sent_ = true;
  const std::array<std::byte, 2> payload{std::byte{static_cast<std::uint8_t>(code >> 8)},
                                         std::byte{static_cast<std::uint8_t>(code)}};
  frame(op_close, payload, out);
}

void WsFilter::fail(std::uint16_t code, std::string why, std::vector<std::byte>& out) {
  close(code, out);
  status_ = Status::failed;
  error_ = std::move(why);
}

}  // namespace coapgw::transport
