// Image decoding and preprocessing: any bytes as a JPEG or PNG file. The first byte picks the
// colour mode and the preprocessing (resize, crop or neither), the rest is the file.
#include <cstdint>
#include <vector>

#include "core/image.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t choice = data[0];
  const std::vector<uint8_t> file(data + 1, data + size);
  // Small enough that one input decodes in milliseconds, large enough for real photos.
  tsnative::DecodeLimits limits;
  limits.max_pixels = 4096 * 4096;
  tsnative::Preprocess spec;
  spec.color = (choice & 1) ? tsnative::ColorMode::kGrayscale : tsnative::ColorMode::kRGB;
  spec.resize = (choice & 2) ? 0 : 1 + (choice >> 3);  // 1..32: cheap, but resizes every image
  spec.crop = (choice & 4) ? 0 : 1;
  if (spec.color == tsnative::ColorMode::kGrayscale) {
    spec.mean = {0.5};
    spec.std = {0.25};
  }
  try {
    const auto image = tsnative::decode_image_bytes(file, "fuzz", spec.color, limits);
    tsnative::preprocess(image, spec, limits);
  } catch (const tsnative::Error& error) {
    tsnative_fuzz::check_error(error);
  }
  return 0;
}
