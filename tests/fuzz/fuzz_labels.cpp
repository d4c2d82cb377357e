// Label files (ts-infer --labels, tsnative.classify(labels=...)): any bytes.
#include <cstdint>

#include "core/metadata.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const tsnative_fuzz::ScratchFile scratch("labels.txt");
  try {
    const auto labels = tsnative::read_labels(scratch.write(data, size));
    if (labels.empty()) std::abort();  // read_labels promises at least one or an error
  } catch (const tsnative::Error& error) {
    tsnative_fuzz::check_error(error);
  }
  return 0;
}
