// The archive guard: pickles whose declared lengths run past their end are refused before
// LibTorch's unpickler would allocate them; honest pickles and archives pass untouched.
#include "core/archive_guard.h"

#include <string>

#include <caffe2/serialize/in_memory_adapter.h>

#include "test_support.h"

namespace {

using tsnative::pickle_problem;

std::string problem_of(const std::string& pickle) {
  return pickle_problem(pickle.data(), pickle.size());
}

// Pickles written out by hand, opcode by opcode (pickletools' names in the comments). A hex
// escape swallows the hex digits after it, hence the split literals ("\x00" "abc").
TEST(PickleProblem, HonestPicklesHaveNone) {
  using namespace std::string_literals;
  EXPECT_EQ(problem_of("\x80\x02X\x03\x00\x00\x00"
                       "abc."s),
            "");                                          // PROTO 2, BINUNICODE 'abc'
  EXPECT_EQ(problem_of("X\x05\x00\x00\x00XXXXX."s), "");  // opcode bytes inside a string
  EXPECT_EQ(problem_of("X\x03\x00\x00\x00"
                       "abc"s),
            "");  // exactly at the end, no STOP
  EXPECT_EQ(problem_of("ctorch\nFloatStorage\nK\x07\x8c\x02hi."s), "");  // GLOBAL's two lines
  EXPECT_EQ(problem_of(""s), "");
}

TEST(PickleProblem, LengthsPastTheEndAreReportedWithTheirOffset) {
  using namespace std::string_literals;
  EXPECT_EQ(problem_of("\x80\x02X\x04\xff\xff\xff"
                       "abc."s),  // BINUNICODE of 4,294,967,044 bytes
            "its pickled data declares 4294967044 bytes at offset 2, past the end of its 11 bytes");
  EXPECT_NE(problem_of("C\x05"
                       "ab"s)
                .find("declares 5 bytes at offset 0"),
            std::string::npos);
  EXPECT_NE(problem_of("B\x00\x00\x00\x01."s).find("declares 16777216 bytes"), std::string::npos);
  // BINBYTES8 with 2^63: compared without overflowing.
  EXPECT_NE(problem_of("\x8e\x00\x00\x00\x00\x00\x00\x00\x80"s).find("9223372036854775808"),
            std::string::npos);
  // After lines and fixed-size arguments, the scan still lands on the right opcodes.
  EXPECT_NE(problem_of("ctorch\nX\nJ\x01\x02\x03\x04X\x00\x00\x00\x10"s).find("at offset 14"),
            std::string::npos);
}

TEST(PickleProblem, MemoIndicesBeyondWhatThePickleCanNumberAreReported) {
  using namespace std::string_literals;
  // EMPTY_LIST, LONG_BINPUT 1,701,995,877 (a fuzzer's find: 27 GB of memo table).
  EXPECT_EQ(problem_of("]reere."s),  // r, then the little-endian index 0x65726565
            "its pickled data stores memo entry 1701995877 at offset 1, more entries than its 7 "
            "bytes can number");
  EXPECT_EQ(problem_of("]r\x05\x00\x00\x00."s), "");  // 5 <= 7 bytes: fine
  EXPECT_EQ(problem_of("]q\xff."s), "");              // BINPUT: one byte, at most 255
}

TEST(PickleProblem, WhatIsNotAPickleIsLeftToTheUnpickler) {
  using namespace std::string_literals;
  EXPECT_EQ(problem_of("\xffX\xff\xff\xff\xff"s), "");  // an unknown opcode ends the scan
  EXPECT_EQ(problem_of(".X\xff\xff\xff\xff"s), "");     // so does STOP
  EXPECT_EQ(problem_of("X\x01\x00"s), "");              // a length cut short
}

// The storages a pickle declares, as LibTorch's unpickler would read them: persistent ids
// ('storage', class, key, location, numel) built from literals or from memo entries.
TEST(StorageDeclarations, FindsEachPersistentIdWithItsClassAndSize) {
  using namespace std::string_literals;
  const std::string pickle =
      "\x80\x02(X\x07\x00\x00\x00storageq\x00"
      "ctorch\nFloatStorage\nq\x01X\x01\x00\x00\x00"
      "0X\x03\x00\x00\x00"
      "cpuq\x02K\x03tQ"  // the first id, its parts memoized
      "(h\x00"
      "ctorch\nLongStorage\nX\x02\x00\x00\x00"
      "12h\x02J\x00\x00\x01\x00tQ"  // the second: BINGET 'storage', BINGET 'cpu', 65536
      "\x86."s;                     // TUPLE2 of the two, STOP
  const auto storages = tsnative::storage_declarations(pickle.data(), pickle.size());
  ASSERT_EQ(storages.size(), 2u);
  EXPECT_EQ(storages[0].key, "0");
  EXPECT_EQ(storages[0].numel, 3);
  EXPECT_EQ(storages[0].itemsize, 4u);
  EXPECT_EQ(storages[1].key, "12");
  EXPECT_EQ(storages[1].numel, 65536);
  EXPECT_EQ(storages[1].itemsize, 8u);
}

TEST(StorageDeclarations, StopsWhereTheStackCannotBeFollowed) {
  using namespace std::string_literals;
  EXPECT_TRUE(tsnative::storage_declarations("tQ."s.data(), 3).empty());  // TUPLE without MARK
  EXPECT_TRUE(tsnative::storage_declarations("Q"s.data(), 1).empty());    // nothing to pop
  // A tuple that is not a storage id is not one.
  const auto other = "(X\x01\x00\x00\x00xK\x01tQ."s;
  EXPECT_TRUE(tsnative::storage_declarations(other.data(), other.size()).empty());
}

class ArchiveProblemTest : public tsnative_test::TempDirTest {};

TEST_F(ArchiveProblemTest, ASavedModuleHasNone) {
  const std::string path = tmp_.file("linear.pt");
  tsnative_test::make_linear_module().save(path);
  const auto bytes = tsnative_test::read_bytes(path);
  EXPECT_EQ(tsnative::archive_problem(std::make_shared<caffe2::serialize::MemoryReadAdapter>(
                bytes.data(), static_cast<off_t>(bytes.size()))),
            "");
}

TEST_F(ArchiveProblemTest, WhatIsNotAZipArchiveIsLeftToTheLoader) {
  const std::string text = "not a zip archive at all";
  EXPECT_EQ(tsnative::archive_problem(std::make_shared<caffe2::serialize::MemoryReadAdapter>(
                text.data(), static_cast<off_t>(text.size()))),
            "");
}

}  // namespace
