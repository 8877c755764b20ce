// The streamed read of dtls.psk.keys_file: what it accepts, it reads exactly as the full reader
// (yaml-cpp, parse_psk_list) does; whatever it does not vouch for goes to the full reader, so every
// bad entry is still reported with its key path and message; a reload builds a whole new table.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/sections.hpp"
#include "dtls/psk_store.hpp"
#include "temp_dir.hpp"

namespace coapgw::config {
namespace {

using test::TempDir;

// The scan's table holds exactly the full reader's entries.
void expect_same_as_full_reader(const std::string& text) {
  TempDir dir;
  auto full = load_psk_keys_file(dir.write("keys.yaml", text));
  auto table = detail::scan_psk_keys(text);
  ASSERT_NE(table, nullptr) << text;
  ASSERT_EQ(table->size(), full.size()) << text;
  for (const auto& k : full) EXPECT_EQ(table->find(k.identity), std::string_view(k.key)) << k.identity;
}

TEST(KeysFileScan, ReadsWhatTheFullReaderReads) {
  expect_same_as_full_reader("- { identity: \"d1\", key: \"k1\" }\n- { identity: \"d2\", key_hex: \"6b32\" }\n");
  expect_same_as_full_reader("- identity: plain-id\n  key: plain.key/1+2=\n- identity: 'single ''q'''\n  key_hex: ABCDef\n");
  expect_same_as_full_reader("# comment\n---\n- {identity: \"esc\\t\\u00e9\", key: \"line\\nbreak\"}  # trailing\n...\n");
  expect_same_as_full_reader("- { key: \"k-first\", identity: 12345 }\n- { identity: \"true\", key: false }\n");
  expect_same_as_full_reader("- identity: folded\n  key: >-\n    two\n    lines\n- identity: literal\n  key: |\n    text\n");
  expect_same_as_full_reader("[ { identity: a, key: b }, { identity: c, key: d } ]\n");
  expect_same_as_full_reader(std::string("- { identity: \"") + std::string(128, 'i') + "\", key: \"" +
                             std::string(256, 'k') + "\" }\n");
}

TEST(KeysFileScan, NothingButCommentsIsNoKeys) {
  for (const char* text : {"", "# no keys yet\n", "[]\n"}) {
    auto table = detail::scan_psk_keys(text);
    ASSERT_NE(table, nullptr) << text;
    EXPECT_TRUE(table->empty());
  }
}

// Each of these is either wrong or a form the scan does not read: it hands over to the full reader.
TEST(KeysFileScan, GivesUpOnAnythingItCannotVouchFor) {
  const std::vector<std::string> texts = {
      "- { identity: d1, key: k1 }\n- { identity: d1, key: k2 }\n",      // repeated identity
      "- { identity: d1, key_hex: \"zz\" }\n",                           // bad hex
      "- { identity: d1, key_hex: \"abc\" }\n",                          // odd hex
      "- { identity: d1 }\n",                                            // no key
      "- { key: k }\n",                                                  // no identity
      "- { identity: d1, key: a, key_hex: \"00\" }\n",                   // both
      "- { identity: d1, key: a, extra: 1 }\n",                          // unknown key
      "- { identity: d1, identity: d2, key: a }\n",                      // repeated key
      "- { identity: d1, key: ~ }\n",                                    // null
      "- { identity: d1, key: null }\n",
      "- { identity: d1, key: }\n",
      "- { identity: \"\", key: a }\n",                                  // empty
      "- { identity: d1, key: \"\" }\n",
      "- { identity: d1, key_hex: \"\" }\n",
      "- { identity: " + std::string(129, 'i') + ", key: a }\n",          // too long
      "- { identity: d1, key: " + std::string(257, 'k') + " }\n",
      "- { identity: d1, key: &k secret }\n- { identity: d2, key: *k }\n",  // anchor and alias
      "- { identity: d1, key: !!str secret }\n",                          // tag
      "- !!map { identity: d1, key: a }\n",
      "- { identity: d1, key: [a, b] }\n",                                // not a scalar
      "- [d1, a]\n",                                                      // not a map
      "- d1\n",
      "identity: d1\nkey: a\n",                                           // not a list
      "~\n",
      "- { identity: d1, key: a }\n---\n- { identity: d2, key: b }\n",    // a second document
      "- { identity: d1, key: \"unterminated }\n",                        // syntax error
      "- { identity: d1\tkey: a }\n",
  };
  for (const auto& text : texts) EXPECT_EQ(detail::scan_psk_keys(text), nullptr) << text;
}

// Through read_psk_keys_table a bad file is worded by the full reader, issue for issue.
TEST(KeysFileTable, BadEntriesAreReportedAsBefore) {
  TempDir dir;
  const std::vector<std::string> texts = {
      "- { identity: d1, key: k1 }\n- { identity: d1, key: k2 }\n- { identity: d3, key_hex: \"zz\" }\n",
      "- { identity: x }\n- { key: y }\n- { identity: z, key: a, key_hex: \"00\", extra: 1 }\n",
      "- { identity: d1, key: ~ }\n- 7\n",
      "identity: x\nkey: y\n",
      "- { identity: d1, key: \"unterminated }\n",
  };
  for (const auto& text : texts) {
    auto path = dir.write("bad.yaml", text);
    std::vector<ConfigIssue> expected, got;
    detail::read_psk_keys_file(path, expected);
    auto table = detail::read_psk_keys_table(path, got);
    ASSERT_NE(table, nullptr);
    ASSERT_FALSE(expected.empty()) << text;
    ASSERT_EQ(got.size(), expected.size()) << text;
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].key_path, expected[i].key_path) << text;
      EXPECT_EQ(got[i].message, expected[i].message) << text;
    }
  }
}

// A valid file in a form the scan leaves alone still loads (through the full reader).
TEST(KeysFileTable, ValidButUnscannedFileLoads) {
  TempDir dir;
  auto path = dir.write("anchors.yaml", "- { identity: d1, key: &k shared }\n- { identity: d2, key: *k }\n");
  std::vector<ConfigIssue> issues;
  auto table = detail::read_psk_keys_table(path, issues);
  EXPECT_TRUE(issues.empty());
  ASSERT_EQ(table->size(), 2u);
  EXPECT_EQ(table->find("d2"), "shared");
}

TEST(KeysFileTable, UnreadableFileIsAnIssueAndNoKeys) {
  std::vector<ConfigIssue> issues;
  auto table = detail::read_psk_keys_table("/nonexistent/keys.yaml", issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("/nonexistent/keys.yaml"), std::string::npos);
  EXPECT_TRUE(table->empty());
}

std::string generated_keys(int count, const std::string& key_prefix) {
  std::string text;
  for (int i = 0; i < count; ++i)
    text += "- { identity: \"device-" + std::to_string(i) + "\", key: \"" + key_prefix + std::to_string(i) + "\" }\n";
  return text;
}

// Start-up and SIGHUP read the file the same way: each load is a whole new table; the config (and
// the PskStore built from it) of the previous load keep theirs.
TEST(KeysFileTable, ReloadBuildsANewTableBesideTheOld) {
  TempDir dir;
  constexpr int count = 50'000;
  dir.write("keys.yaml", generated_keys(count, "first-"));
  auto gw = dir.write("gw.yaml", "dtls: { psk: { keys: [{ identity: inline, key: x }], keys_file: keys.yaml } }\n");
  const Config first = load_config_file(gw);
  dir.write("keys.yaml", generated_keys(count / 2, "second-"));
  const Config second = load_config_file(gw);

  ASSERT_EQ(first.dtls.psk.file_keys->size(), static_cast<std::size_t>(count));
  ASSERT_EQ(second.dtls.psk.file_keys->size(), static_cast<std::size_t>(count / 2));
  const dtls::PskStore old_store(first.dtls.psk.file_keys), new_store(second.dtls.psk.file_keys);
  EXPECT_EQ(old_store.find("device-49999"), "first-49999");
  EXPECT_FALSE(new_store.find("device-49999").has_value());
  EXPECT_EQ(new_store.find("device-0"), "second-0");
  EXPECT_EQ(old_store.find("device-0"), "first-0");
}

TEST(KeysFileTable, InlineIdentityInTheFileIsRefused) {
  TempDir dir;
  dir.write("keys.yaml", "- { identity: inline, key: k }\n- { identity: other, key: k }\n");
  auto gw = dir.write("gw.yaml", "dtls: { psk: { keys: [{ identity: inline, key: x }], keys_file: keys.yaml } }\n");
  try {
    load_config_file(gw);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues.size(), 1u) << e.what();
    EXPECT_EQ(e.issues[0].key_path, "dtls.psk.keys_file");
    EXPECT_NE(e.issues[0].message.find("\"inline\""), std::string::npos);
  }
}

}  // namespace
}  // namespace coapgw::config
