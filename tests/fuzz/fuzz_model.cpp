// Model loading through the core: any bytes as a TorchScript archive (Model::load_from_memory,
// which tsnative.load(bytes) uses; loading from a path reads the same archive reader). What
// loads is described too (methods, signatures, metadata), as ts-infer --info does, and its
// forward runs where it takes tensors alone. The packages' own harness is fuzz_package.cpp.
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "core/model.h"
#include "fuzz_support.h"

namespace {

// Runs forward once on tensors of each shape the seeds' models take ([1, 3, 8, 8], [1, 4]) if
// it takes tensors alone; a shape it does not take is an InferenceError, checked like any.
void run_forward(const tsnative::Model& model) {
  const auto& arguments = model.signature("forward").arguments();
  for (const auto& argument : arguments) {
    if (argument.type()->kind() != c10::TypeKind::TensorType) return;
  }
  for (const auto& shape : {std::vector<int64_t>{1, 3, 8, 8}, std::vector<int64_t>{1, 4}}) {
    std::vector<c10::IValue> inputs(arguments.size(), at::rand(shape));
    try {
      model.forward(std::move(inputs));
    } catch (const tsnative::Error& error) {
      tsnative_fuzz::check_error(error);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto model = tsnative::Model::load_from_memory(data, size);
    for (const auto& method : model->methods()) model->signature(method);
    model->named_parameters();
    model->attributes();
    if (model->has_method("forward")) run_forward(*model);
  } catch (const tsnative::Error& error) {
    tsnative_fuzz::check_error(error);
  }
  return 0;
}
