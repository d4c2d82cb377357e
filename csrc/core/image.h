// Images: decode JPEG and PNG files to uint8 HWC tensors the way Pillow's
// `Image.open(p).convert("RGB")` does, and preprocess them like torchvision's standard ImageNet
// eval transform (Resize, CenterCrop, ToTensor, Normalize) applied to a PIL image.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tsnative {

// The channels an image is decoded to: RGB (3) or Pillow's "L" luma (1).
enum class ColorMode { kRGB, kGrayscale };

// A preprocessing spec. The defaults are torchvision's standard ImageNet eval transform:
// Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std).
struct Preprocess {
  int64_t resize = 256;  // shorter side after resizing (bilinear, antialiased); 0 = keep size
  int64_t crop = 224;    // centre crop to crop x crop; 0 = no crop
  std::vector<double> mean{0.485, 0.456, 0.406};  // one per channel, or one for all; empty = none
  std::vector<double> std{0.229, 0.224, 0.225};   // the same length as mean, no zeros
  ColorMode color = ColorMode::kRGB;              // channels of the output (load_image, preprocess)
};

// Changes to a Preprocess: each field that is set replaces the base's. Front ends fill this
// from flags or keyword arguments; the core merges it over the model's metadata (or the
// ImageNet defaults), so every front end overrides the same way.
struct PreprocessOverrides {
  std::optional<int64_t> resize;
  std::optional<int64_t> crop;
  std::optional<std::vector<double>> mean;
  std::optional<std::vector<double>> std;
  std::optional<ColorMode> color;
};

// `base` with the set fields of `overrides` replaced, validated (OptionError if unusable).
Preprocess apply_overrides(const Preprocess& base, const PreprocessOverrides& overrides);

// "rgb" or "grayscale" -> ColorMode. Throws OptionError for anything else.
ColorMode parse_color_mode(const std::string& name);

// ColorMode -> "rgb" or "grayscale".
const char* color_mode_name(ColorMode color);

// Throws OptionError naming the problem if `spec` cannot be applied (negative sizes, a crop
// larger than the resize, mean / std of the wrong length, a zero or non-finite std).
void validate_preprocess(const Preprocess& spec);

// Guards against decompression bombs and other hostile files.
struct DecodeLimits {
  // Pillow's hard limit: Image.open raises DecompressionBombError above 2 * MAX_IMAGE_PIXELS =
  // 2 * 89,478,485 pixels, so any image a Pillow-based pipeline accepts, tsnative accepts too
  // (an RGB image at the limit takes 512 MiB). Checked against the header's dimensions before
  // any pixel memory is allocated, and against the size preprocess() would resize an image to.
  int64_t max_pixels = 178956970;
  // Progressive JPEGs with more scans are refused (each scan walks the whole image, so a small
  // file with thousands of scans is a CPU bomb). Real encoders write about ten.
  int64_t max_jpeg_scans = 1000;
};

// Reads and decodes a JPEG or PNG file (detected by its magic bytes, not its extension) to a
// contiguous uint8 [H, W, C] tensor, C = 3 for kRGB and 1 for kGrayscale. Alpha is dropped and
// 16-bit samples are reduced exactly as Pillow's convert("RGB") / convert("L") do; EXIF
// orientation is not applied (Pillow does not either). Throws InputError naming the file and
// the cause (missing, empty, not an image, corrupt or truncated, unsupported, too many pixels).
at::Tensor decode_image(const std::string& path, ColorMode color, const DecodeLimits& limits = {});

// The same for an image already in memory; `name` is only used in error messages.
at::Tensor decode_image_bytes(const std::vector<uint8_t>& bytes, const std::string& name,
                              ColorMode color, const DecodeLimits& limits = {});

// Preprocesses a uint8 [H, W, C] image (C = 1 or 3; converted to spec.color first): resize the
// shorter side to spec.resize (bilinear, antialiased as Pillow resamples), centre crop, scale to
// [0, 1], normalise. Returns a contiguous float32 [C, H, W] tensor. Throws OptionError for a bad
// spec (or a crop larger than an image that is not resized) and InputError for a bad tensor or
// a resized size over limits.max_pixels.
at::Tensor preprocess(const at::Tensor& hwc_uint8, const Preprocess& spec,
                      const DecodeLimits& limits = {});

// decode_image(path, spec.color, limits) then preprocess(image, spec, limits): float32 [C, H, W].
// The spec is checked before the file is read; errors name the file.
at::Tensor load_image(const std::string& path, const Preprocess& spec,
                      const DecodeLimits& limits = {});

}  // namespace tsnative
