// Model loading through the core: any bytes as a TorchScript archive (Model::load_from_memory,
// which tsnative.load(bytes) uses; loading from a path reads the same archive reader). What
// loads is described too (methods, signatures, metadata), as ts-infer --info does.
#include <cstdint>

#include "core/model.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto model = tsnative::Model::load_from_memory(data, size);
    for (const auto& method : model->methods()) model->signature(method);
    model->named_parameters();
    model->attributes();
  } catch (const tsnative::Error& error) {
    tsnative_fuzz::check_error(error);
  }
  return 0;
}
