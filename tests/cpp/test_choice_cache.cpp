// The choice cache: what is remembered is read back for the same key only; entries that are
// corrupt, for another key, or in a directory that cannot be written are misses, not errors.
#include "core/backends/torchscript/choice_cache.h"

#include <filesystem>
#include <fstream>
#include <thread>

#include <caffe2/serialize/in_memory_adapter.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_support.h"

namespace {

using tsnative::cached_choice;
using tsnative::CachedChoice;
using tsnative::remember_choice;

class ChoiceCacheTest : public tsnative_test::TempDirTest {
 protected:
  std::string dir() const { return tmp_.file("cache"); }
  // The one entry file in the cache, whatever its hashed name.
  std::filesystem::path only_entry() const {
    std::vector<std::filesystem::path> entries;
    for (const auto& entry : std::filesystem::directory_iterator(dir() + "/choices")) {
      entries.push_back(entry.path());
    }
    EXPECT_EQ(entries.size(), 1u);
    return entries.empty() ? std::filesystem::path() : entries.front();
  }
};

TEST_F(ChoiceCacheTest, ARememberedChoiceIsReadBackForTheSameKeyOnly) {
  EXPECT_FALSE(cached_choice(dir(), "key a").has_value());
  EXPECT_EQ(remember_choice(dir(), "key a", {"exact (float32, frozen)", "timed: 1 ms"}), "");
  const auto hit = cached_choice(dir(), "key a");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->variant, "exact (float32, frozen)");
  EXPECT_EQ(hit->timings, "timed: 1 ms");
  EXPECT_FALSE(cached_choice(dir(), "key b").has_value());
  EXPECT_FALSE(cached_choice("", "key a").has_value());  // "" remembers nothing
  EXPECT_EQ(remember_choice("", "key a", {"x", "y"}), "");
}

TEST_F(ChoiceCacheTest, AnEntryForAnotherKeyUnderTheSameNameIsAMiss) {
  ASSERT_EQ(remember_choice(dir(), "key a", {"v", "t"}), "");
  const auto entry = only_entry();
  std::ofstream(entry) << R"({"key": "key b", "variant": "v", "timings": "t"})";
  EXPECT_FALSE(cached_choice(dir(), "key a").has_value());  // as a hash collision would be
}

TEST_F(ChoiceCacheTest, ACorruptEntryIsAMissAndIsOverwritten) {
  ASSERT_EQ(remember_choice(dir(), "key a", {"v", "t"}), "");
  const auto entry = only_entry();
  for (const char* text : {"", "{\"key\": \"key a\"", "[1, 2]", "{\"key\": 7}"}) {
    std::ofstream(entry) << text;
    EXPECT_FALSE(cached_choice(dir(), "key a").has_value()) << text;
  }
  ASSERT_EQ(remember_choice(dir(), "key a", {"w", "t"}), "");
  EXPECT_EQ(cached_choice(dir(), "key a")->variant, "w");
}

TEST_F(ChoiceCacheTest, ADirectoryThatCannotBeMadeIsAReasonNotAnError) {
  const auto file = tmp_.write("a_file", std::vector<uint8_t>{1});
  const auto why = remember_choice(file + "/cache", "key", {"v", "t"});
  EXPECT_NE(why.find("cannot create " + file + "/cache/choices"), std::string::npos) << why;
  EXPECT_FALSE(cached_choice(file + "/cache", "key").has_value());
}

TEST_F(ChoiceCacheTest, ConcurrentWritersLeaveOneWholeEntry) {
  std::vector<std::thread> writers;
  for (int i = 0; i < 8; ++i) {
    writers.emplace_back([this, i] {
      for (int round = 0; round < 20; ++round) {
        remember_choice(dir(), "key", {"variant " + std::to_string(i), "t"});
        const auto read = cached_choice(dir(), "key");  // never half an entry
        EXPECT_TRUE(read.has_value());
      }
    });
  }
  for (auto& writer : writers) writer.join();
  EXPECT_EQ(cached_choice(dir(), "key")->variant.rfind("variant ", 0), 0u);
  only_entry();  // no temporary file left behind
}

TEST(ChoiceKeyTest, NamesWhatTheChoiceDependsOn) {
  const auto key = tsnative::choice_key("0123", "fast", "cpu", {torch::ones({2, 3})});
  for (const char* part : {"model 0123", "optimize fast", "device cpu", "Float[2, 3]", "threads ",
                           "LibTorch ", "tsnative "}) {
    EXPECT_NE(key.find(part), std::string::npos) << part << " not in " << key;
  }
  EXPECT_NE(key, tsnative::choice_key("0123", "fast", "cpu", {torch::ones({4, 3})}));
  EXPECT_NE(key, tsnative::choice_key("0123", "exact", "cpu", {torch::ones({2, 3})}));
}

TEST(ArchiveHashTest, DependsOnEveryByte) {
  std::string bytes(3 << 20, 'a');  // more than one 1 MiB chunk
  caffe2::serialize::MemoryReadAdapter same(bytes.data(), static_cast<off_t>(bytes.size()));
  const auto hash = tsnative::archive_hash(same);
  EXPECT_EQ(hash, tsnative::archive_hash(same));
  bytes[(2 << 20) + 5] = 'b';
  caffe2::serialize::MemoryReadAdapter changed(bytes.data(), static_cast<off_t>(bytes.size()));
  EXPECT_NE(hash, tsnative::archive_hash(changed));
}

}  // namespace
