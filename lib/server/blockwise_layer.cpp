// The block-wise part of the server role (RFC 7959), towards the devices: Block1 uploads
// reassembled before forwarding, Block2 answers cut in the device's block size from a whole body,
// the body kept (per request, with its ETag) for the follow-up block requests. The state and its
// bounds live in BlockwiseCache; this file turns its results into CoAP answers and metrics.
#include <algorithm>

#include "coap/block.hpp"
#include "coap/option.hpp"
#include "server/server_role.hpp"

namespace coapgw::server {

namespace {
bool has_option(std::span<const std::pair<std::uint16_t, std::vector<std::byte>>> options, std::uint16_t number) {
  return std::any_of(options.begin(), options.end(), [number](auto& o) { return o.first == number; });
}
}  // namespace

std::string ServerRole::answer_key_of(const session::Session& s, const coap::MessageView& m, std::string_view path,
                                      std::string_view query) {
  std::optional<std::uint16_t> accept;
  if (auto* a = m.find(coap::option::accept)) accept = static_cast<std::uint16_t>(coap::decode_uint(a->value));
  // A FETCH selects by its body, which every block request repeats (RFC 8132 §2.3.2).
  std::span<const std::byte> selection;
  if (m.code == coap::code::fetch) selection = m.payload;
  return answer_key(s.id(), m.code, path, query, accept, selection);
}

bool ServerRole::reassemble(session::Session& s, const coap::MessageView& m, Reply& r, std::vector<std::byte>& body,
                            session::TimePoint now) {
  auto block = coap::decode_block(m.find(coap::option::block1)->value);
  if (!block) {
    reply(s, r, coap::code::bad_request, 0, coap::as_bytes("bad Block1 option"), now);
    return false;
  }
  std::span<const std::byte> tag;
  if (auto* t = m.find(coap::option::request_tag)) tag = t->value;
  const auto key = upload_key(s.id(), m.code, coap::uri_path(m), coap::uri_query(m), tag);
  auto too_large = [&] {
    blockwise_for(s).end_reassembly(key);
    host_.count_bad(metrics::BadReason::body_too_large, 1);
    reply(s, r, coap::code::request_entity_too_large, std::nullopt, {}, now, std::nullopt,
          static_cast<std::uint32_t>(settings_.max_body_size));
  };
  if (auto* size1 = m.find(coap::option::size1); size1 && coap::decode_uint(size1->value) > settings_.max_body_size) {
    too_large();
    return false;
  }
  // RFC 7959 2.3: every block but the last carries exactly the block size.
  if (block->more && m.payload.size() != block->size()) {
    reply(s, r, coap::code::bad_request, 0, coap::as_bytes("Block1 payload size does not match SZX"), now);
    return false;
  }
  const auto expires = now + settings_.transmission.exchange_lifetime();
  BlockwiseCache::Reassembly* ra = nullptr;
  if (block->num == 0) {
    auto [started, admit] = blockwise_for(s).start_reassembly(s.id(), key, expires);
    if (admit != BlockwiseCache::Admit::ok) {
      host_.count_bad(admit == BlockwiseCache::Admit::session_full ? metrics::BadReason::reassemblies_session_full
                                                             : metrics::BadReason::reassemblies_full, 1);
      reply(s, r, coap::code::service_unavailable, std::nullopt, {}, now, 5);
      return false;
    }
    ra = started;
  } else {
    ra = blockwise_for(s).find_reassembly(key);
  }
  const std::size_t offset = static_cast<std::size_t>(block->num) * block->size();
  if (ra == nullptr || offset != ra->body.size()) {
    // A block we have no start for, or out of order: RFC 7959 2.9.2.
    if (ra != nullptr) blockwise_for(s).end_reassembly(key);
    reply(s, r, coap::code::request_entity_incomplete, std::nullopt, {}, now);
    return false;
  }
  if (ra->body.size() + m.payload.size() > settings_.max_body_size) {
    too_large();
    return false;
  }
  ra->body.insert(ra->body.end(), m.payload.begin(), m.payload.end());
  ra->expires = expires;
  if (block->more) {
    r.block1 = coap::BlockValue{block->num, true, block->szx};
    reply(s, r, coap::code::continue_, std::nullopt, {}, now);
    return false;
  }
  body = std::move(ra->body);
  blockwise_for(s).end_reassembly(key);
  r.block1 = coap::BlockValue{block->num, false, block->szx};
  return true;
}

bool ServerRole::serve_cached_block(session::Session& s, const Reply& r, session::TimePoint now) {
  const auto* a = blockwise_for(s).find_answer(r.answer_key, now);
  if (a == nullptr) return false;
  auto kept = *a;  // reply() may replace the cache entry
  Reply from_cache = r;
  from_cache.from_cache = true;
  blockwise_for(s).touch_answer(r.answer_key, now + settings_.transmission.exchange_lifetime());
  reply(s, from_cache, kept.code, kept.content_format, kept.body, now, kept.max_age, std::nullopt, kept.options);
  return true;
}

ServerRole::Block2Window ServerRole::block2_window(session::Session& s, const Reply& r, std::uint8_t code,
                                                   std::optional<std::uint16_t> content_format,
                                                   std::optional<std::uint32_t> max_age, std::span<const std::byte> body,
                                                   Relayed relayed, std::uint8_t szx, session::TimePoint now) {
  Block2Window w;
  w.payload = body;
  const std::size_t block_size = std::size_t{16} << szx;
  if (coap::code_class(code) != 2) {
    // An error is answered whole, whatever block the request asked for (a 4.04 to a block-1
    // request is still a 4.04); a long diagnostic is cut to one block rather than made block-wise.
    if (body.size() > block_size) w.payload = body.first(block_size);
    if (!r.from_cache && !r.answer_key.empty()) blockwise_for(s).drop_answer(r.answer_key);
    return w;
  }
  if (body.size() <= block_size && r.block2_num == 0) {
    if (!r.from_cache && !r.answer_key.empty()) blockwise_for(s).drop_answer(r.answer_key);  // a newer answer
    return w;
  }
  const std::size_t offset = static_cast<std::size_t>(r.block2_num) * block_size;
  if (offset >= body.size() && !(offset == 0 && body.empty())) {
    w.past_end = true;  // asked for a block past the end
    w.payload = {};
    return w;
  }
  w.block2 = coap::BlockValue{r.block2_num, offset + block_size < body.size(), szx};
  w.payload = body.subspan(offset, std::min(block_size, body.size() - offset));
  if (r.from_cache) return w;  // its options (ETag included) came with it
  // A representation that can be fetched again gets an ETag when its upstream gave none, so a
  // client can tell (RFC 7959 §2.4) when blocks fetched after the kept body is gone differ.
  const bool refetchable = r.method == coap::code::get || r.method == coap::code::fetch;
  if (refetchable && code == coap::code::content && !has_option(relayed, coap::option::etag))
    w.etag = derived_etag(code, content_format, body);
  if (!w.block2->more) {
    blockwise_for(s).drop_answer(r.answer_key);  // the last block of a fresh answer: nothing to keep
    return w;
  }
  // Block 0 of a fresh answer (or a later block of a re-fetched one): this body replaces whatever
  // was kept for the request, so later blocks are cut from it and carry its ETag.
  BlockwiseCache::Answer a;
  a.code = code;
  a.content_format = content_format;
  a.max_age = max_age;
  a.options.assign(relayed.begin(), relayed.end());
  if (!w.etag.empty()) a.options.emplace_back(coap::option::etag, w.etag);
  a.body.assign(body.begin(), body.end());
  a.expires = now + settings_.transmission.exchange_lifetime();
  switch (blockwise_for(s).store_answer(s.id(), r.answer_key, std::move(a))) {
    case BlockwiseCache::Stored::stored:
      break;
    case BlockwiseCache::Stored::stored_evicting_own:
      host_.count_bad(metrics::BadReason::block_cache_session_full, 1);
      break;
    case BlockwiseCache::Stored::too_large:
    case BlockwiseCache::Stored::worker_full:
      host_.count_bad(metrics::BadReason::block_cache_full, 1);
      break;
  }
  return w;
}

}  // namespace coapgw::server
