// The tensor-file reader (torch.save's format, as ts-infer --input reads it): any bytes.
#include <cstdint>

#include "core/tensor_io.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const tsnative_fuzz::ScratchFile scratch("tensor.pt");
  try {
    tsnative::load_value(scratch.write(data, size));
  } catch (const tsnative::Error& error) {
    tsnative_fuzz::check_error(error);
  }
  return 0;
}
