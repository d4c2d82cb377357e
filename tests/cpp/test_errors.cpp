// printable(): what every error message passes through. Expected strings are written by hand.
#include <gtest/gtest.h>

#include "core/errors.h"

namespace tsnative_test {
namespace {

using tsnative::printable;

TEST(PrintableTest, KeepsPrintableAsciiAndWellFormedUtf8) {
  EXPECT_EQ(printable("cannot load 'model.pt': no such file"),
            "cannot load 'model.pt': no such file");
  // é (2 bytes), 中 (3), 😀 (4), U+00A0 (the first character after the C1 controls).
  const std::string utf8 = "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 \xc2\xa0";
  EXPECT_EQ(printable(utf8), utf8);
}

TEST(PrintableTest, EscapesBytesThatAreNotUtf8) {
  EXPECT_EQ(printable("found '\x84' here"), "found '\\x84' here");
  EXPECT_EQ(printable("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(printable("cut \xe4\xb8"), "cut \\xe4\\xb8");  // a sequence cut short at the end
  EXPECT_EQ(printable("\xc3("), "\\xc3(");                 // a lead byte without continuation
}

TEST(PrintableTest, EscapesControlCharactersSoTheMessageStaysOneLine) {
  EXPECT_EQ(printable("a\nb\r\tc"), "a\\x0ab\\x0d\\x09c");
  EXPECT_EQ(printable(std::string("nul\0end", 7)), "nul\\x00end");
  EXPECT_EQ(printable("del\x7f"), "del\\x7f");
  EXPECT_EQ(printable("c1 \xc2\x85"), "c1 \\xc2\\x85");  // U+0085, NEXT LINE
}

TEST(PrintableTest, EscapesWhatStrictDecodersRefuse) {
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
  EXPECT_EQ(printable("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");           // overlong, 3 bytes
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a UTF-16 surrogate
  EXPECT_EQ(printable("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
}

TEST(PrintableTest, EscapingIsIdempotentAndEveryErrorIsEscaped) {
  const std::string once = printable("bad \x84\n");
  EXPECT_EQ(printable(once), once);
  EXPECT_STREQ(tsnative::LoadError("bad \x84").what(), "bad \\x84");
  EXPECT_STREQ(tsnative::ArgumentError("line\nbreak").what(), "line\\x0abreak");
}

}  // namespace
}  // namespace tsnative_test
