// libFuzzer target for the CoAP codec (lib/coap).
//
// Any input that parses must survive Message -> serialize -> parse with identical fields and,
// because the RFC 7252 option encoding is unique, identical bytes; MessageWriter must agree with
// serialize() and report overflow one byte short. The option helpers run on every option.
// Violations abort() so libFuzzer records a crash (assert() would vanish under NDEBUG).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fuzz_check.hpp"
#include "coap/block.hpp"
#include "coap/message.hpp"
#include "coap/option.hpp"

namespace {

using namespace coapgw::coap;

using coapgw::fuzz::same;

void check_options(const MessageView& v) {
  if (auto bad = first_bad_critical_option(v)) {
    FUZZ_CHECK(is_critical(*bad));
    FUZZ_CHECK(v.find(*bad) != nullptr);
  }
  const std::string path = uri_path(v);
  FUZZ_CHECK(!path.empty() && path.front() == '/');
  (void)uri_query(v);
  for (const OptionView& o : v.option_list()) {
    (void)find_option(o.number);
    (void)decode_uint(o.value);
    if (const auto block = decode_block(o.value)) {
      FUZZ_CHECK(block->szx <= 6 && block->num <= max_block_num);
      std::array<std::byte, 3> out{};
      const std::size_t n = encode_block(*block, out);
      FUZZ_CHECK(n <= o.value.size());  // minimal encoding is never longer
      const auto again = decode_block(std::span<const std::byte>(out.data(), n));
      FUZZ_CHECK(again && *again == *block);
    }
  }
}

void check_writer(const MessageView& v, std::span<const std::byte> expected) {
  std::vector<std::byte> buf(expected.size());
  MessageWriter w(buf);
  bool ok = w.header(v.type, v.code, v.message_id, v.token);
  for (const OptionView& o : v.option_list()) ok = ok && w.option(o.number, o.value);
  ok = ok && w.payload(v.payload);
  FUZZ_CHECK(ok && !w.overflow());
  FUZZ_CHECK(same(w.bytes(), expected));

  // One byte short must overflow somewhere and leave a prefix that still parses.
  std::vector<std::byte> small(expected.size() - 1);
  MessageWriter s(small);
  bool all = s.header(v.type, v.code, v.message_id, v.token);
  for (const OptionView& o : v.option_list()) all = s.option(o.number, o.value) && all;
  all = s.payload(v.payload) && all;
  FUZZ_CHECK(!all && s.overflow());
  if (s.size() > 0) {
    MessageView prefix;
    FUZZ_CHECK(parse(s.bytes(), prefix) == ParseError::ok);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  MessageView v;
  const ParseError err = parse(input, v);
  FUZZ_CHECK(!to_string(err).empty());
  const auto header = parse_header(input);
  if (err != ParseError::ok) {
    FUZZ_CHECK(err != ParseError::bad_version || !header);
    return 0;
  }
  FUZZ_CHECK(header && header->type == v.type && header->code == v.code &&
             header->message_id == v.message_id && header->token_length == v.token.size());
  FUZZ_CHECK(v.option_count <= max_options);
  for (std::size_t i = 1; i < v.option_count; ++i)
    FUZZ_CHECK(v.options[i - 1].number <= v.options[i].number);

  check_options(v);

  const Message m = Message::from_view(v);
  const std::vector<std::byte> wire = serialize(m);
  FUZZ_CHECK(wire.size() == serialized_size(m));
  FUZZ_CHECK(same(wire, input));

  MessageView again;
  FUZZ_CHECK(parse(wire, again) == ParseError::ok);
  FUZZ_CHECK(again.type == v.type && again.code == v.code && again.message_id == v.message_id);
  FUZZ_CHECK(same(again.token, v.token) && same(again.payload, v.payload));
  FUZZ_CHECK(again.option_count == v.option_count);
  for (std::size_t i = 0; i < v.option_count; ++i) {
    FUZZ_CHECK(again.options[i].number == v.options[i].number);
    FUZZ_CHECK(same(again.options[i].value, v.options[i].value));
  }

  check_writer(v, wire);
  return 0;
}
