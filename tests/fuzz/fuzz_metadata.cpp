// The metadata JSON a model archive carries: any text. What parses must survive a round trip
// through to_json unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/metadata.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  tsnative::Metadata metadata;
  try {
    metadata = tsnative::parse_metadata(json, "'fuzz.pt'");
  } catch (const tsnative::Error& error) {
    tsnative_fuzz::check_error(error);
    return 0;
  }
  const std::string written = tsnative::to_json(metadata);
  if (tsnative::to_json(tsnative::parse_metadata(written, "'fuzz.pt'")) != written) {
    std::fprintf(stderr, "metadata changed in a round trip:\n%s\n", written.c_str());
    std::abort();
  }
  return 0;
}
