// The fast read of a PSK keys file: libyaml's event parser streams the list straight into a
// KeyTable, with no document tree and no per-entry strings, so a million keys load in seconds and
// cost the table's bytes only. It accepts only what it is sure the full reader (yaml-cpp,
// parse_psk_list) would accept with the same values: a list of maps whose keys are identity, key
// and key_hex, with untagged scalar values that are not null, valid and unique. Anything else
// (a syntax error, an anchor or alias, a tag, a bad or repeated entry, a second document) makes
// it give up, and the caller reads the file with the full reader, which reports every problem
// with its key path exactly as before.
#include <yaml.h>

#include <array>
#include <memory>
#include <optional>
#include <string_view>

#include "config/sections.hpp"

namespace coapgw::config::detail {
namespace {

enum class Field { identity, key, key_hex };

// One map of the list while it is being read. The key bytes are wiped when it goes.
struct PendingEntry {
  std::array<std::optional<SecretString>, 3> fields;
  std::optional<Field> awaiting;  // the key just read, whose value comes next

  void clear() {
    for (auto& f : fields) f.reset();
    awaiting.reset();
  }
  std::optional<SecretString>& operator[](Field f) { return fields[static_cast<std::size_t>(f)]; }
};

std::string_view text_of(const yaml_event_t& e) {
  return {reinterpret_cast<const char*>(e.data.scalar.value), e.data.scalar.length};
}

std::optional<Field> field_named(std::string_view name) {
  if (name == "identity") return Field::identity;
  if (name == "key") return Field::key;
  if (name == "key_hex") return Field::key_hex;
  return std::nullopt;
}

// yaml-cpp reads these plain scalars as null (Reader::scalar_string: an empty string).
bool is_null_word(std::string_view s) { return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL"; }

// A value the full reader takes as this exact string: untagged, no anchor, not a null.
bool plain_string(const yaml_event_t& e) {
  if (e.data.scalar.tag != nullptr || e.data.scalar.anchor != nullptr) return false;
  return e.data.scalar.style != YAML_PLAIN_SCALAR_STYLE || !is_null_word(text_of(e));
}

// The entry's checks of parse_psk_entry, as a yes/no: the full reader words the no.
bool add_entry(PendingEntry& entry, KeyTable& table) {
  const auto& identity = entry[Field::identity];
  auto& key = entry[Field::key];
  auto& hex = entry[Field::key_hex];
  if (!identity || identity->empty() || identity->size() > max_psk_identity_bytes) return false;
  if (key.has_value() == hex.has_value()) return false;
  if (hex) {
    key = decode_hex(*hex);
    if (!key) return false;
  }
  if (key->empty() || key->size() > max_psk_key_bytes) return false;
  return table.insert(*identity, *key);  // false for a repeated identity
}

class Scanner {
 public:
  explicit Scanner(std::string_view text) {
    yaml_parser_initialize(&parser_);
    yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  }
  ~Scanner() {
    // The parser's decoded-text buffers held key bytes.
    secure_wipe(parser_.raw_buffer.start, static_cast<std::size_t>(parser_.raw_buffer.end - parser_.raw_buffer.start));
    secure_wipe(parser_.buffer.start, static_cast<std::size_t>(parser_.buffer.end - parser_.buffer.start));
    yaml_parser_delete(&parser_);
  }
  Scanner(const Scanner&) = delete;
  Scanner& operator=(const Scanner&) = delete;

  std::shared_ptr<KeyTable> run() {
    auto table = std::make_shared<KeyTable>();
    for (;;) {
      yaml_event_t e;
      if (yaml_parser_parse(&parser_, &e) == 0) return nullptr;
      const bool ok = on_event(e, *table);
      const bool end = e.type == YAML_STREAM_END_EVENT;
      if (e.type == YAML_SCALAR_EVENT) secure_wipe(e.data.scalar.value, e.data.scalar.length);
      yaml_event_delete(&e);
      if (!ok) return nullptr;
      if (end) break;
    }
    table->shrink_to_fit();
    return table;
  }

 private:
  // Where in the file the next event belongs.
  enum class At { stream, document, list, entry, after_list, after_document };

  bool on_event(const yaml_event_t& e, KeyTable& table) {
    switch (at_) {
      case At::stream:
        if (e.type == YAML_STREAM_START_EVENT) return true;
        if (e.type == YAML_DOCUMENT_START_EVENT) return step(At::document);
        return e.type == YAML_STREAM_END_EVENT;  // nothing but comments: no keys
      case At::document:
        // A list at the top; a null or anything else is the full reader's to judge.
        return e.type == YAML_SEQUENCE_START_EVENT && e.data.sequence_start.anchor == nullptr &&
               e.data.sequence_start.tag == nullptr && step(At::list);
      case At::list:
        if (e.type == YAML_SEQUENCE_END_EVENT) return step(At::after_list);
        if (e.type != YAML_MAPPING_START_EVENT || e.data.mapping_start.anchor != nullptr ||
            e.data.mapping_start.tag != nullptr)
          return false;
        entry_.clear();
        return step(At::entry);
      case At::entry:
        return on_entry_event(e, table);
      case At::after_list:
        return e.type == YAML_DOCUMENT_END_EVENT && step(At::after_document);
      case At::after_document:
        return e.type == YAML_STREAM_END_EVENT;  // a second document: the full reader decides
    }
    return false;
  }

  bool on_entry_event(const yaml_event_t& e, KeyTable& table) {
    if (e.type == YAML_MAPPING_END_EVENT) {
      const bool added = !entry_.awaiting && add_entry(entry_, table);
      entry_.clear();
      return added && step(At::list);
    }
    if (e.type != YAML_SCALAR_EVENT || !plain_string(e)) return false;
    if (!entry_.awaiting) {
      auto field = field_named(text_of(e));
      if (!field || entry_[*field]) return false;  // unknown or repeated key
      entry_.awaiting = field;
      return true;
    }
    entry_[*entry_.awaiting] = SecretString(text_of(e));
    entry_.awaiting.reset();
    return true;
  }

  bool step(At next) {
    at_ = next;
    return true;
  }

  yaml_parser_t parser_{};
  At at_ = At::stream;
  PendingEntry entry_;
};

}  // namespace

std::shared_ptr<KeyTable> scan_psk_keys(std::string_view text) { return Scanner(text).run(); }

}  // namespace coapgw::config::detail
