#include "core/archive_guard.h"

#include <cstdint>
#include <optional>
#include <unordered_map>
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

// Walks the opcodes of `pickle`, handing each with its argument to `visit` (for a counted
// argument, the bytes after its length) until STOP, an opcode this table does not know, the end,
// or `visit` returning false. Returns why the pickle cannot be unpickled safely: a counted length
// past the end, or a memo index beyond what its size can number; "" if neither.
template <typename Visit>
std::string walk_pickle(const char* pickle, size_t size, const Visit& visit) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(pickle);
  size_t at = 0;
  while (at < size) {
    const unsigned char opcode = bytes[at];
    const size_t start = at++;
    const Argument argument = argument_of(opcode);
    if (opcode == '.' || argument.kind == Argument::kUnknown) return "";  // STOP, or not ours
    const size_t left = size - at;
    const unsigned char* data = bytes + at;
    size_t length = 0;
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
        length = argument.bytes;
        at += argument.bytes;
        break;
      case Argument::kCounted: {
        if (argument.bytes > left) return "";
        const uint64_t declared = little_endian(bytes + at, argument.bytes);
        at += argument.bytes;
        if (declared > size - at) {
          return "its pickled data declares " + std::to_string(declared) + " bytes at offset " +
                 std::to_string(start) + ", past the end of its " + std::to_string(size) + " bytes";
        }
        data = bytes + at;
        length = static_cast<size_t>(declared);
        at += length;
        break;
      }
      case Argument::kLines:
        for (size_t line = 0; line < argument.bytes && at < size; ++line) {
          while (at < size && bytes[at] != '\n') ++at;
          ++at;
        }
        at = std::min(at, size);
        length = at - (start + 1);
        break;
      default:
        break;
    }
    if (!visit(opcode, data, length)) return "";
  }
  return "";
}

// What the storage-declaring part of a pickle holds: strings, integers, and tuples of them.
// Anything else is kOther, kept shallow so that the simulation stays linear in the pickle.
struct PickleValue {
  enum Kind { kMark, kString, kInt, kTuple, kOther } kind = kOther;
  std::string text;
  int64_t number = 0;
  std::vector<PickleValue> items;  // kTuple: its elements, nested tuples as kOther
};

PickleValue shallow(const PickleValue& value) {
  return value.kind == PickleValue::kTuple ? PickleValue{} : value;
}

// Bytes per element of a storage class as LibTorch's unpickler names them ("FloatStorage").
size_t storage_itemsize(const std::string& global) {
  static const std::vector<std::pair<std::string, size_t>> sizes{
      {"Double", 8}, {"Float", 4}, {"Half", 2},           {"BFloat16", 2},
      {"Long", 8},   {"Int", 4},   {"Short", 2},          {"Char", 1},
      {"Byte", 1},   {"Bool", 1},  {"ComplexDouble", 16}, {"ComplexFloat", 8},
      {"QInt32", 4}, {"QInt8", 1}, {"QUInt8", 1}};
  for (const auto& [name, itemsize] : sizes) {
    if (global == "torch\n" + name + "Storage") return itemsize;
  }
  return 1;  // a class not listed here: at least a byte an element
}

// Why a storage that `pickle_name` declares cannot be read from its record: the record holds
// fewer bytes than the storage's elements need.
std::string storage_problem(caffe2::serialize::PyTorchStreamReader& reader,
                            const std::string& pickle_name,
                            const std::vector<StorageDeclaration>& storages) {
  // LibTorch reads the storages of data.pkl from data/<key>, of constants.pkl from constants/.
  const std::string folder = pickle_name.substr(0, pickle_name.size() - 4) + "/";
  for (const auto& storage : storages) {
    const std::string record = folder + storage.key;
    if (storage.numel <= 0 || !reader.hasRecord(record)) continue;  // LibTorch explains
    uint64_t needed = 0;
    const bool overflow = __builtin_mul_overflow(static_cast<uint64_t>(storage.numel),
                                                 static_cast<uint64_t>(storage.itemsize), &needed);
    const uint64_t held = reader.getRecordSize(record);
    if (overflow || needed > held) {
      return "its record '" + pickle_name + "' declares a storage of " +
             std::to_string(storage.numel) + " elements of " + std::to_string(storage.itemsize) +
             " bytes in '" + record + "', which holds " + std::to_string(held) + " bytes";
    }
  }
  return "";
}

}  // namespace

std::string pickle_problem(const char* pickle, size_t size) {
  return walk_pickle(pickle, size,
                     [](unsigned char, const unsigned char*, size_t) { return true; });
}

std::vector<StorageDeclaration> storage_declarations(const char* pickle, size_t size) {
  std::vector<StorageDeclaration> storages;
  std::vector<PickleValue> stack;
  std::unordered_map<uint64_t, PickleValue> memo;
  uint64_t next_memo = 0;
  const auto pop = [&stack](size_t count) {
    if (count > stack.size()) return false;
    stack.resize(stack.size() - count);
    return true;
  };
  // Pops down to the last mark and returns what was above it; false if there is no mark.
  const auto pop_mark = [&stack](std::vector<PickleValue>* above) {
    for (size_t i = stack.size(); i-- > 0;) {
      if (stack[i].kind != PickleValue::kMark) continue;
      if (above != nullptr) {
        for (size_t j = i + 1; j < stack.size(); ++j) above->push_back(shallow(stack[j]));
      }
      stack.resize(i);
      return true;
    }
    return false;
  };
  const auto visit = [&](unsigned char opcode, const unsigned char* data, size_t length) {
    PickleValue value;
    switch (opcode) {
      case '(':
        stack.push_back({PickleValue::kMark});
        return true;
      case 'K':
      case 'M':
        stack.push_back({PickleValue::kInt, "", static_cast<int64_t>(little_endian(data, length))});
        return true;
      case 'J':
        stack.push_back({PickleValue::kInt, "", static_cast<int32_t>(little_endian(data, length))});
        return true;
      case 0x8a:  // LONG1: little-endian two's complement
        if (length > 8) break;
        value = {PickleValue::kInt, "", static_cast<int64_t>(little_endian(data, length))};
        if (length > 0 && length < 8 && (data[length - 1] & 0x80)) {
          value.number -= static_cast<int64_t>(1) << (8 * length);
        }
        stack.push_back(value);
        return true;
      case 'X':
      case 0x8c:
      case 0x8d:
      case 'T':
      case 'U':
      case 'c':  // GLOBAL: "module\nname\n"
        value = {PickleValue::kString, std::string(reinterpret_cast<const char*>(data), length)};
        if (opcode == 'c' && !value.text.empty() && value.text.back() == '\n') {
          value.text.pop_back();
        }
        stack.push_back(value);
        return true;
      case 'q':
      case 'r':
      case 0x94:  // BINPUT LONG_BINPUT MEMOIZE
        if (stack.empty()) return false;
        memo[opcode == 0x94 ? next_memo++ : little_endian(data, length)] = shallow(stack.back());
        return true;
      case 'h':
      case 'j': {  // BINGET LONG_BINGET
        const auto found = memo.find(little_endian(data, length));
        stack.push_back(found == memo.end() ? PickleValue{} : found->second);
        return true;
      }
      case 't':  // TUPLE
        value.kind = PickleValue::kTuple;
        if (!pop_mark(&value.items)) return false;
        stack.push_back(value);
        return true;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1 TUPLE2 TUPLE3
        const size_t count = opcode - 0x84;
        if (count > stack.size()) return false;
        value.kind = PickleValue::kTuple;
        for (size_t i = stack.size() - count; i < stack.size(); ++i) {
          value.items.push_back(shallow(stack[i]));
        }
        pop(count);
        stack.push_back(value);
        return true;
      }
      case 'Q': {  // BINPERSID: ('storage', torch.XStorage, key, location, numel)
        if (stack.empty()) return false;
        const auto& id = stack.back();
        if (id.kind == PickleValue::kTuple && id.items.size() == 5 &&
            id.items[0].text == "storage" && id.items[1].kind == PickleValue::kString &&
            id.items[2].kind == PickleValue::kString && id.items[4].kind == PickleValue::kInt) {
          storages.push_back(
              {id.items[2].text, id.items[4].number, storage_itemsize(id.items[1].text)});
        }
        stack.back() = PickleValue{};
        return true;
      }
      case 'l':  // LIST
        if (!pop_mark(nullptr)) return false;
        stack.emplace_back();
        return true;
      case 'e':
      case 'u':  // APPENDS SETITEMS
        return pop_mark(nullptr);
      case 'a':
      case 'b':
      case '0':  // APPEND BUILD POP
        return pop(1);
      case 's':  // SETITEM
        return pop(2);
      case 'R':
      case 0x81:
      case 0x93:  // REDUCE NEWOBJ STACK_GLOBAL
        if (!pop(2)) return false;
        stack.emplace_back();
        return true;
      case 0x80:
      case 0x95:  // PROTO FRAME
        return true;
      case ')':
      case '}':
      case ']':
      case 'N':
      case 0x88:
      case 0x89:
      case 'G':
      case 'B':
      case 'C':
      case 0x8e:
      case 0x96:
      case 'P':
        stack.emplace_back();
        return true;
      default:
        break;
    }
    return false;  // an opcode whose effect is not simulated here: stop, keep what was found
  };
  walk_pickle(pickle, size, visit);
  return storages;
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
      // An empty pickle is no value at all; and reading a record of 0 bytes makes the zip
      // reader copy 0 bytes to a null buffer (undefined behaviour, found by fuzzing), in
      // LibTorch's loaders as here.
      if (reader->getRecordSize(name) == 0) {
        return "its record '" + std::string(name) + "' is empty (0 bytes)";
      }
      const auto [data, length] = reader->getRecord(name);
      const auto* pickle = static_cast<const char*>(data.get());
      if (auto problem = pickle_problem(pickle, length); !problem.empty()) {
        return "its record '" + std::string(name) + "': " + problem;
      }
      if (auto problem = storage_problem(*reader, name, storage_declarations(pickle, length));
          !problem.empty()) {
        return problem;
      }
    } catch (const std::exception&) {
      // a record LibTorch cannot read: its loader explains
    }
  }
  return "";
}

}  // namespace tsnative
