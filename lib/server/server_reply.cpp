// The server role's reply writer: one answer to a device's request, piggybacked on the ACK, as a
// NON, or as our own CON after an empty ACK (a separate answer), its body cut to the Block2 window
// the request asked for, with our options and those an upstream answer relays in number order.
#include <algorithm>

#include "coap/option.hpp"
#include "server/server_role.hpp"

namespace coapgw::server {

std::uint8_t ServerRole::max_szx_for(std::size_t max_message_size) {
  std::size_t room = max_message_size > 64 ? max_message_size - 64 : 16;
  return coap::szx_for_size(room);
}

void ServerRole::reply(session::Session& s, const Reply& r, std::uint8_t code,
                       std::optional<std::uint16_t> content_format, std::span<const std::byte> body,
                       session::TimePoint now, std::optional<std::uint32_t> max_age, std::optional<std::uint32_t> size1,
                       Relayed relayed) {
  bool piggyback = r.request_type == coap::Type::con && !r.separate;
  auto type = piggyback ? coap::Type::ack : (r.separate ? coap::Type::con : coap::Type::non);
  auto mid = piggyback ? r.message_id : s.next_message_id();

  std::uint8_t szx = std::min(r.block2_szx, max_szx_for(settings_.max_message_size));
  auto window = block2_window(s, r, code, content_format, max_age, body, relayed, szx, now);
  if (window.past_end) code = coap::code::bad_option;
  const auto& block2 = window.block2;
  std::span<const std::byte> payload = window.payload;

  // Options in number order: our own plus what an upstream answer relays (ETag, Location-*).
  struct Opt {
    std::uint16_t number;
    std::span<const std::byte> value;
  };
  std::array<Opt, 48> opts;  // ours (at most 6) and relayed ones; a message holds few more
  std::size_t n_opts = 0;
  std::array<std::byte, 4> cf_buf, age_buf, size2_buf, size1_buf;
  std::array<std::byte, 3> b2_buf, b1_buf;
  auto add_uint = [&](std::uint16_t number, std::uint32_t v, std::array<std::byte, 4>& buf) {
    opts[n_opts++] = Opt{number, std::span<const std::byte>(buf.data(), coap::encode_uint(v, buf))};
  };
  if (content_format) add_uint(coap::option::content_format, *content_format, cf_buf);
  if (max_age) add_uint(coap::option::max_age, *max_age, age_buf);
  if (block2) opts[n_opts++] = Opt{coap::option::block2, std::span<const std::byte>(b2_buf.data(), coap::encode_block(*block2, b2_buf))};
  if (r.block1) opts[n_opts++] = Opt{coap::option::block1, std::span<const std::byte>(b1_buf.data(), coap::encode_block(*r.block1, b1_buf))};
  if (block2 && (block2->num == 0 || r.size2_requested)) add_uint(coap::option::size2, static_cast<std::uint32_t>(body.size()), size2_buf);
  if (size1) add_uint(coap::option::size1, *size1, size1_buf);
  bool cut = false;  // an upstream answer with more options than we can relay: never relayed in part
  for (auto& [number, value] : relayed) {
    if (n_opts < opts.size()) opts[n_opts++] = Opt{number, value};
    else cut = true;
  }
  if (!window.etag.empty()) {
    if (n_opts < opts.size()) opts[n_opts++] = Opt{coap::option::etag, window.etag};
    else cut = true;
  }
  std::stable_sort(opts.begin(), opts.begin() + static_cast<std::ptrdiff_t>(n_opts),
                   [](const Opt& a, const Opt& b) { return a.number < b.number; });
  coap::MessageWriter w(scratch_);
  w.header(type, code, mid, r.token_span());
  for (std::size_t i = 0; i < n_opts; ++i) w.option(opts[i].number, opts[i].value);
  w.payload(payload);
  if (w.overflow() || cut) {
    // Options alone do not fit coap.max_message_size (or the option table): say so rather than
    // send a cut message.
    coap::MessageWriter e(scratch_);
    e.header(type, cut ? coap::code::bad_gateway : coap::code::internal_server_error, mid, r.token_span());
    w = e;
  }
  count_request(r.method, code);
  auto bytes = w.bytes();
  if (type == coap::Type::con) {
    layer_->send_con(s, bytes, mid, now);  // retransmitted until ACKed; counted outstanding_full if not
  } else {
    layer_->answer(s, r.message_id, r.token_span(), bytes);  // kept for the request's duplicates
  }
}

}  // namespace coapgw::server
