// coapgw-bench CoAP exchange — request building and answer classification (see coap_exchange.hpp).
#include "coap_exchange.hpp"

#include <array>

#include "coap/message.hpp"

namespace coapgw::bench {

namespace {
constexpr std::uint16_t uri_path_option = 11;
}

RequestTemplate RequestTemplate::from_path(const std::string& path) {
  RequestTemplate request;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) request.path_segments.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return request;
}

std::size_t build_get(const RequestTemplate& request, std::uint16_t message_id, std::uint32_t token,
                      std::span<std::byte> out) {
  const std::array<std::byte, 4> token_bytes = {
      std::byte(token >> 24), std::byte(token >> 16), std::byte(token >> 8), std::byte(token)};
  coap::MessageWriter writer(out);
  if (!writer.header(coap::Type::con, coap::code::get, message_id, token_bytes)) return 0;
  for (const auto& segment : request.path_segments) {
    if (!writer.option_string(uri_path_option, segment)) return 0;
  }
  return writer.overflow() ? 0 : writer.size();
}

std::size_t build_empty_ack(std::uint16_t message_id, std::span<std::byte> out) {
  coap::MessageWriter writer(out);
  if (!writer.header(coap::Type::ack, coap::code::empty, message_id, {})) return 0;
  return writer.size();
}

std::size_t build_device_answer(std::span<const std::byte> datagram, std::uint16_t message_id,
                                std::span<std::byte> out) {
  coap::MessageView view;
  if (coap::parse(datagram, view) != coap::ParseError::ok || !coap::is_request(view.code)) return 0;
  if (view.type != coap::Type::con && view.type != coap::Type::non) return 0;
  const bool con = view.type == coap::Type::con;
  coap::MessageWriter writer(out);
  writer.header(con ? coap::Type::ack : coap::Type::non, coap::code::content, con ? view.message_id : message_id,
                view.token);
  writer.payload(std::as_bytes(std::span<const char>("ok", 2)));
  return writer.overflow() ? 0 : writer.size();
}

Answer read_answer(std::span<const std::byte> datagram) {
  Answer answer;
  coap::MessageView view;
  if (coap::parse(datagram, view) != coap::ParseError::ok) return answer;
  answer.code = view.code;
  answer.message_id = view.message_id;
  if (view.type == coap::Type::rst) {
    answer.kind = AnswerKind::reset;
    return answer;
  }
  if (view.type == coap::Type::ack && coap::is_empty(view.code)) {
    answer.kind = AnswerKind::empty_ack;
    return answer;
  }
  if (!coap::is_response(view.code) || view.token.size() != 4) return answer;
  for (const auto b : view.token) answer.token = (answer.token << 8) | std::to_integer<std::uint32_t>(b);
  answer.kind = view.type == coap::Type::con ? AnswerKind::separate_response : AnswerKind::response;
  return answer;
}

}  // namespace coapgw::bench
