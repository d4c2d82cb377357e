#include "core/archive_guard.h"

#include <cstdint>
#include <optional>
#include <vector>

#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>

#include "core/errors.h"

namespace tsnative {
namespace {

// Deflate's best ratio is 1032:1: no honest record inflates to more than that many times the
// bytes that hold it.
constexpr uint64_t kMaxDeflateRatio = 1032;

uint64_t little_endian(const unsigned char* bytes, size_t count) {
  uint64_t value = 0;
  for (size_t i = 0; i < count; ++i) value |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  return value;
}

// How an opcode's argument is laid out in the pickle protocol (pickletools' table).
struct Argument {
  enum Kind { kNone, kFixed, kCounted, kLines, kUnknown } kind;
  size_t bytes;  // kFixed: argument size; kCounted: size of the length before the data; kLines
};

Argument argument_of(unsigned char opcode) {
  switch (opcode) {
    case 'K':
    case 'h':
    case 'q':
    case 0x80:
    case 0x82:  // BININT1 BINGET BINPUT PROTO EXT1
      return {Argument::kFixed, 1};
    case 'M':
    case 0x83:  // BININT2 EXT2
      return {Argument::kFixed, 2};
    case 'J':
    case 'j':
    case 'r':
    case 0x84:  // BININT LONG_BINGET LONG_BINPUT EXT4
      return {Argument::kFixed, 4};
    case 'G':
    case 0x95:  // BINFLOAT FRAME
      return {Argument::kFixed, 8};
    case 'U':
    case 'C':
    case 0x8c:
    case 0x8a:  // SHORT_BINSTRING SHORT_BINBYTES ..UNICODE LONG1
      return {Argument::kCounted, 1};
    case 'T':
    case 'X':
    case 'B':
    case 0x8b:  // BINSTRING BINUNICODE BINBYTES LONG4
      return {Argument::kCounted, 4};
    case 0x8d:
    case 0x8e:
    case 0x96:  // BINUNICODE8 BINBYTES8 BYTEARRAY8
      return {Argument::kCounted, 8};
    case 'I':
    case 'L':
    case 'F':
    case 'S':
    case 'V':
    case 'g':
    case 'p':
    case 'P':
      return {Argument::kLines, 1};
    case 'c':
    case 'i':  // GLOBAL INST: module and name
      return {Argument::kLines, 2};
    case '(':
    case '.':
    case '0':
    case '1':
    case '2':
    case 'N':
    case 'Q':
    case 'R':
    case 'a':
    case 'b':
    case 'd':
    case '}':
    case 'e':
    case 'l':
    case ']':
    case 'o':
    case 's':
    case 't':
    case ')':
    case 'u':
    case 0x81:
    case 0x85:
    case 0x86:
    case 0x87:
    case 0x88:
    case 0x89:
    case 0x8f:
    case 0x90:
    case 0x91:
    case 0x92:
    case 0x93:
    case 0x94:
    case 0x97:
    case 0x98:
      return {Argument::kNone, 0};
    default:
      return {Argument::kUnknown, 0};
  }
}

}  // namespace

std::string pickle_problem(const char* pickle, size_t size) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(pickle);
  size_t at = 0;
  while (at < size) {
    const unsigned char opcode = bytes[at];
    const size_t start = at++;
    const Argument argument = argument_of(opcode);
    if (opcode == '.' || argument.kind == Argument::kUnknown) return "";  // STOP, or not ours
    const size_t left = size - at;
    switch (argument.kind) {
      case Argument::kFixed:
        if (argument.bytes > left) return "";  // cut short: the unpickler says so, cheaply
        // LONG_BINPUT: the unpickler grows its memo table to the index (16 bytes an entry).
        // Honest pickles number memo entries from 0, so an index needs as many opcodes first.
        if (const uint64_t index = opcode == 'r' ? little_endian(bytes + at, 4) : 0; index > size) {
          return "its pickled data stores memo entry " + std::to_string(index) + " at offset " +
                 std::to_string(start) + ", more entries than its " + std::to_string(size) +
                 " bytes can number";
        }
        at += argument.bytes;
        break;
      case Argument::kCounted: {
        if (argument.bytes > left) return "";
        const uint64_t length = little_endian(bytes + at, argument.bytes);
        at += argument.bytes;
        if (length > size - at) {
          return "its pickled data declares " + std::to_string(length) + " bytes at offset " +
                 std::to_string(start) + ", past the end of its " + std::to_string(size) + " bytes";
        }
        at += static_cast<size_t>(length);
        break;
      }
      case Argument::kLines:
        for (size_t line = 0; line < argument.bytes && at < size; ++line) {
          while (at < size && bytes[at] != '\n') ++at;
          ++at;
        }
        break;
      default:
        break;
    }
  }
  return "";
}

std::string archive_problem(
    const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive) {
  std::optional<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader.emplace(archive);
  } catch (const std::exception&) {
    return "";  // not an archive LibTorch opens: its loader explains
  }
  std::vector<std::string> names;
  try {
    names = reader->getAllRecords();
  } catch (const c10::Error& e) {
    // LibTorch's loaders would read such an archive by name, never listing it: refused, since
    // the records that cannot be listed cannot be checked either.
    return "its zip directory is not that of a PyTorch archive (" +
           first_line(e.what_without_backtrace()) + ")";
  }
  const uint64_t archive_size = archive->size();
  for (const auto& name : names) {
    try {
      // A deflated record (torch.jit.save deflates code/) is inflated into a buffer of the
      // size the zip directory declares: 889 MB for 24 bytes took 3.7 GB (found by fuzzing).
      const uint64_t size = reader->getRecordSize(name);
      const uint64_t offset = reader->getRecordOffset(name);
      const uint64_t held = offset < archive_size ? archive_size - offset : 0;
      if (size / kMaxDeflateRatio > held) {
        return "its record '" + name + "' declares " + std::to_string(size) +
               " bytes, more than deflate can fit in the " + std::to_string(held) +
               " bytes after it";
      }
    } catch (const std::exception&) {
      // a record LibTorch cannot locate: its loader explains, if it needs it
    }
  }
  // The pickles LibTorch's loaders read: a TorchScript module and its constants, or the value
  // torch.save wrote (code/*.debug_pkl is never read).
  for (const char* name : {"data.pkl", "constants.pkl"}) {
    try {
      if (!reader->hasRecord(name)) continue;
      const auto [data, length] = reader->getRecord(name);
      if (auto problem = pickle_problem(static_cast<const char*>(data.get()), length);
          !problem.empty()) {
        return "its record '" + std::string(name) + "': " + problem;
      }
    } catch (const std::exception&) {
      // a record LibTorch cannot read: its loader explains
    }
  }
  return "";
}

}  // namespace tsnative
