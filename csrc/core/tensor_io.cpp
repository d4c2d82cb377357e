#include "core/tensor_io.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include <caffe2/serialize/in_memory_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include "core/archive_guard.h"
#include "core/errors.h"
#include "core/script_object.h"

namespace tsnative {

c10::IValue load_value(const std::string& path) {
  if (const auto problem = file_problem(path); !problem.empty()) {
    throw InputError("cannot read tensor file " + quoted(path) + ": " + problem);
  }
  std::ifstream file(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  // Read through MemoryReadAdapter, which stops at the end of the bytes, not pickle_load: its
  // reader copies whatever range a corrupt zip directory asks for (a segfault, found by
  // fuzzing). Otherwise what pickle_load does.
  const auto archive = std::make_shared<caffe2::serialize::MemoryReadAdapter>(
      bytes.data(), static_cast<off_t>(bytes.size()));
  if (const auto problem = archive_problem(archive); !problem.empty()) {
    throw InputError("cannot read tensor file " + quoted(path) + ": " + problem);
  }
  c10::IValue value;
  try {
    caffe2::serialize::PyTorchStreamReader reader(archive);
    value = torch::jit::readArchiveAndTensors("data", /*pickle_prefix=*/"", /*tensor_prefix=*/"",
                                              std::nullopt, std::nullopt, std::nullopt, reader);
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    throw InputError(
        "cannot read tensor file '" + path +
        "' (expected a tensor written by torch.save): " + message.substr(0, message.find('\n')));
  } catch (const std::exception& e) {
    throw InputError("cannot read tensor file '" + path +
                     "' (expected a tensor written by torch.save): " + e.what());
  }
  return value;
}

namespace {

// The value with every list and dict typed Any: LibTorch's pickler writes a list of tensors,
// ints, floats or bools through a global of its own (build_tensorlist, ...), which torch.load's
// default weights_only=True refuses; an Any list is a plain pickle list.
c10::IValue with_plain_containers(const c10::IValue& value) {
  if (value.isList()) {
    c10::impl::GenericList list(c10::AnyType::get());
    for (const auto& element : value.toListRef()) list.push_back(with_plain_containers(element));
    return list;
  }
  if (value.isTuple()) {
    std::vector<c10::IValue> elements;
    for (const auto& element : value.toTupleRef().elements()) {
      elements.push_back(with_plain_containers(element));
    }
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  if (value.isGenericDict()) {
    const auto dict = value.toGenericDict();
    c10::impl::GenericDict plain(dict.keyType(), c10::AnyType::get());
    for (const auto& entry : dict) plain.insert(entry.key(), with_plain_containers(entry.value()));
    return plain;
  }
  return value;
}

}  // namespace

void save_value(const std::string& path, const c10::IValue& value) {
  // pickle_save would write it, but torch.load can then only read it where the class's Python
  // definition is importable (as module __torch__): refuse rather than write such a file.
  if (c10::IValue object; holds_script_object(value, &object)) {
    throw Error("cannot save the output: it holds a " + object_type_name(object.toObjectRef()) +
                " object (an instance of a TorchScript class), which torch.load could not read "
                "without the class's Python code; return its tensors instead, or read it "
                "through the Python API (tsnative.ScriptObject)");
  }
  // torch.save's format as pickle_save writes it, but with plain lists and dicts: its pickler
  // tags their element types with a global (restore_type_tag) that torch.load's default
  // weights_only=True refuses, and Python needs no tag to read them back.
  std::vector<char> pickled, archive;
  try {
    torch::jit::Pickler pickler(
        [&pickled](const char* data, size_t size) {
          pickled.insert(pickled.end(), data, data + size);
        },
        nullptr, nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
    pickler.protocol();
    pickler.pushIValue(with_plain_containers(value));
    pickler.stop();
    caffe2::serialize::PyTorchStreamWriter writer([&archive](const void* data, size_t size) {
      const auto* bytes = static_cast<const char*>(data);
      archive.insert(archive.end(), bytes, bytes + size);
      return size;
    });
    torch::jit::writeArchiveAndTensors("data", pickled.data(), pickled.size(), pickler.tensorData(),
                                       writer);
    writer.writeEndOfFile();
  } catch (const c10::Error& e) {
    throw Error("cannot serialize the output: " + first_line(e.what_without_backtrace()));
  }
  // Written beside the target and renamed over it: an existing file is replaced whole or kept.
  const std::string partial = path + ".partial";
  {
    std::ofstream file(partial, std::ios::binary);
    file.write(archive.data(), static_cast<std::streamsize>(archive.size()));
    file.close();
    if (!file) {
      const std::string reason = std::strerror(errno);
      std::remove(partial.c_str());
      throw Error("cannot write " + quoted(path) + ": " + reason);
    }
  }
  if (std::rename(partial.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(partial.c_str());
    throw Error("cannot write " + quoted(path) + ": " + reason);
  }
}

}  // namespace tsnative
