#include "core/tensor_io.h"

#include <fstream>
#include <iterator>
#include <vector>

#include <caffe2/serialize/in_memory_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickle.h>

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

void save_value(const std::string& path, const c10::IValue& value) {
  // pickle_save would write it, but torch.load can then only read it where the class's Python
  // definition is importable (as module __torch__): refuse rather than write such a file.
  if (c10::IValue object; holds_script_object(value, &object)) {
    throw Error("cannot save the output: it holds a " + object_type_name(object.toObjectRef()) +
                " object (an instance of a TorchScript class), which torch.load could not read "
                "without the class's Python code; return its tensors instead, or read it "
                "through the Python API (tsnative.ScriptObject)");
  }
  std::vector<char> bytes;
  try {
    bytes = torch::jit::pickle_save(value);
  } catch (const c10::Error& e) {
    throw Error("cannot serialize the output: " + std::string(e.what_without_backtrace()));
  }
  std::ofstream file(path, std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!file) {
    throw Error("cannot write '" + path + "'");
  }
}

}  // namespace tsnative
