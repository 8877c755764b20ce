// KeyTable (one arena and an open-addressing index) and PskStore on top of it.
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "common/key_table.hpp"
#include "dtls/psk_store.hpp"

namespace coapgw {
namespace {

std::string id_of(int i) { return "device-" + std::to_string(i); }
std::string key_of(int i) { return "key-" + std::to_string(i * 7919); }

TEST(KeyTable, EmptyFindsNothing) {
  KeyTable t;
  EXPECT_TRUE(t.empty());
  EXPECT_FALSE(t.find("x").has_value());
  EXPECT_FALSE(t.find("").has_value());
}

TEST(KeyTable, InsertKeepsTheFirstAssignReplaces) {
  KeyTable t;
  EXPECT_TRUE(t.insert("a", "one"));
  EXPECT_FALSE(t.insert("a", "two"));  // a repeated identity changes nothing
  EXPECT_EQ(t.find("a"), "one");
  EXPECT_EQ(t.size(), 1u);
  t.assign("a", "three");
  t.assign("b", "four");
  EXPECT_EQ(t.find("a"), "three");
  EXPECT_EQ(t.find("b"), "four");
  EXPECT_EQ(t.size(), 2u);
}

TEST(KeyTable, BinaryBytesAndPrefixesAreDistinct) {
  KeyTable t;
  const std::string nul_key("\x00\xff\x00", 3);
  ASSERT_TRUE(t.insert(std::string("id\x00x", 4), nul_key));
  ASSERT_TRUE(t.insert("id", "short"));
  ASSERT_TRUE(t.insert("id-longer", "long"));
  EXPECT_EQ(t.find(std::string("id\x00x", 4)), nul_key);
  EXPECT_EQ(t.find("id"), "short");
  EXPECT_EQ(t.find("id-longer"), "long");
  EXPECT_FALSE(t.find("i").has_value());
  EXPECT_FALSE(t.find("id-longe").has_value());
}

// Many entries through every growth step, then trimmed: each is still found, strangers are not,
// and the table stays compact (identity + key + header + a few index bytes per entry).
TEST(KeyTable, ManyEntriesStayCompact) {
  KeyTable t;
  constexpr int count = 200'000;
  std::size_t payload = 0;
  for (int i = 0; i < count; ++i) {
    ASSERT_TRUE(t.insert(id_of(i), key_of(i)));
    payload += id_of(i).size() + key_of(i).size();
  }
  t.shrink_to_fit();
  ASSERT_EQ(t.size(), static_cast<std::size_t>(count));
  for (int i = 0; i < count; i += 997) EXPECT_EQ(t.find(id_of(i)), key_of(i)) << i;
  EXPECT_EQ(t.find(id_of(count - 1)), key_of(count - 1));
  for (int i = count; i < count + 1000; ++i) EXPECT_FALSE(t.find(id_of(i)).has_value());
  // 4 header bytes per entry in the arena, an index of at most 4 slots of 4 bytes per entry.
  EXPECT_LE(t.memory_bytes(), payload + count * (4 + 16));
}

TEST(KeyTable, ReserveThenFillNeedsNoRehashToBeRight) {
  KeyTable t;
  t.reserve(1000, 20);
  for (int i = 0; i < 1000; ++i) t.insert(id_of(i), key_of(i));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(t.find(id_of(i)), key_of(i));
}

TEST(KeyTable, FieldBoundIsAnError) {
  KeyTable t;
  EXPECT_THROW(t.insert(std::string(KeyTable::max_field_bytes + 1, 'i'), "k"), std::length_error);
  EXPECT_THROW(t.insert("i", std::string(KeyTable::max_field_bytes + 1, 'k')), std::length_error);
  EXPECT_TRUE(t.insert(std::string(KeyTable::max_field_bytes, 'i'), std::string(KeyTable::max_field_bytes, 'k')));
  EXPECT_EQ(t.size(), 1u);
}

TEST(PskStore, FileTableAndOwnKeysAreBothFound) {
  auto file = std::make_shared<KeyTable>();
  file->insert("file-device", "file-key");
  dtls::PskStore store(file);
  store.add("inline-device", SecretString("inline-key"));
  EXPECT_EQ(store.size(), 2u);
  EXPECT_EQ(store.find("file-device"), "file-key");
  EXPECT_EQ(store.find("inline-device"), "inline-key");
  EXPECT_FALSE(store.find("other").has_value());
  EXPECT_FALSE(dtls::PskStore().find("file-device").has_value());
}

// A reload builds a new store beside the old one; sessions still holding the old store keep
// seeing the old keys until they let it go.
TEST(PskStore, ReloadSwapsWholeStores) {
  auto before_keys = std::make_shared<KeyTable>();
  before_keys->insert("d1", "old");
  before_keys->insert("d2", "gone-later");
  auto before = std::make_shared<const dtls::PskStore>(before_keys);
  auto after_keys = std::make_shared<KeyTable>();
  after_keys->insert("d1", "new");
  after_keys->insert("d3", "added");
  auto after = std::make_shared<const dtls::PskStore>(after_keys);
  before_keys.reset();
  after_keys.reset();
  EXPECT_EQ(before->find("d1"), "old");
  EXPECT_EQ(before->find("d2"), "gone-later");
  EXPECT_EQ(after->find("d1"), "new");
  EXPECT_FALSE(after->find("d2").has_value());
  EXPECT_EQ(after->find("d3"), "added");
}

}  // namespace
}  // namespace coapgw
