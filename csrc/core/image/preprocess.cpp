// Preprocessing as torchvision's ImageNet eval transform on a PIL image: Resize, CenterCrop,
// ToTensor, Normalize, with the spec's validation and the overrides front ends give.
#include <algorithm>
#include <cmath>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "core/errors.h"
#include "core/image.h"
#include "core/image/pixels.h"

namespace tsnative {
namespace {

using image::channels_of;
using image::Layout;
using image::size_text;
using image::to_color;

// " of 'name'" where there is a file to name.
std::string of_file(const std::string& name) {
  return name.empty() ? std::string() : " of " + quoted(name);
}

}  // namespace

ColorMode parse_color_mode(const std::string& name) {
  if (name == "rgb") return ColorMode::kRGB;
  if (name == "grayscale") return ColorMode::kGrayscale;
  throw OptionError("unknown colour mode '" + name + "': expected 'rgb' or 'grayscale'");
}

const char* color_mode_name(ColorMode color) {
  return color == ColorMode::kGrayscale ? "grayscale" : "rgb";
}

Preprocess apply_overrides(const Preprocess& base, const PreprocessOverrides& overrides) {
  Preprocess spec = base;
  if (overrides.resize) spec.resize = *overrides.resize;
  if (overrides.crop) spec.crop = *overrides.crop;
  if (overrides.mean) spec.mean = *overrides.mean;
  if (overrides.std) spec.std = *overrides.std;
  if (overrides.color) spec.color = *overrides.color;
  validate_preprocess(spec);
  return spec;
}

void validate_preprocess(const Preprocess& spec) {
  if (spec.resize < 0) {
    throw OptionError("resize must be 0 (keep the size) or positive, got " +
                      std::to_string(spec.resize));
  }
  if (spec.crop < 0) {
    throw OptionError("crop must be 0 (no crop) or positive, got " + std::to_string(spec.crop));
  }
  if (spec.resize > 0 && spec.crop > spec.resize) {
    throw OptionError("crop " + std::to_string(spec.crop) + " is larger than resize " +
                      std::to_string(spec.resize) +
                      ": the centre crop must fit in the resized image's shorter side");
  }
  if (spec.mean.size() != spec.std.size()) {
    throw OptionError("mean and std must have the same number of values, got " +
                      std::to_string(spec.mean.size()) + " and " + std::to_string(spec.std.size()));
  }
  const size_t channels = channels_of(spec.color);
  if (!spec.mean.empty() && spec.mean.size() != 1 && spec.mean.size() != channels) {
    throw OptionError("mean and std have " + std::to_string(spec.mean.size()) + " values but " +
                      (spec.color == ColorMode::kRGB ? "RGB images have 3 channels"
                                                     : "grayscale images have 1 channel") +
                      ": give one value per channel, or one for all");
  }
  for (const double value : spec.mean) {
    if (!std::isfinite(value)) {
      throw OptionError("mean values must be finite numbers");
    }
  }
  for (const double value : spec.std) {
    if (value == 0 || !std::isfinite(value)) {
      throw OptionError("std values must be finite and non-zero, got " + std::to_string(value));
    }
  }
}

namespace {

// torchvision's Resize(size) on the shorter side (_compute_resized_output_size): the longer
// side is int(size * long / short), truncated. Returns {height, width}; throws InputError if
// that is more than limits.max_pixels.
std::pair<int64_t, int64_t> resized_size(int64_t height, int64_t width, int64_t size,
                                         const DecodeLimits& limits, const std::string& name) {
  if (size == 0) {
    return {height, width};
  }
  const int64_t shorter = std::min(height, width);
  const int64_t longer = std::max(height, width);
  // In doubles, as Python computes it (exactly, for any size below 2**53), and checked before
  // it becomes an integer, so that no size overflows.
  const double new_longer = std::trunc(static_cast<double>(size) * longer / shorter);
  if (static_cast<double>(size) * new_longer > static_cast<double>(limits.max_pixels)) {
    const std::string new_size = width <= height
                                     ? size_text(size, static_cast<int64_t>(new_longer))
                                     : size_text(static_cast<int64_t>(new_longer), size);
    throw InputError("resizing the image" + of_file(name) + " (" + size_text(width, height) +
                     ") to " + (new_longer < 1e15 ? new_size : "that size") +
                     " would give more pixels than the limit of " +
                     std::to_string(limits.max_pixels));
  }
  const auto resized = static_cast<int64_t>(new_longer);
  return width <= height ? std::make_pair(resized, size) : std::make_pair(size, resized);
}

// torchvision's CenterCrop offset: int(round((size - crop) / 2.0)), with Python's round, which
// rounds halves to even (a 1-pixel margin goes to the end, a 3-pixel one to the start).
int64_t crop_offset(int64_t size, int64_t crop) {
  const int64_t margin = size - crop;
  const int64_t half = margin / 2;
  return (margin % 2 == 1 && half % 2 == 1) ? half + 1 : half;
}

at::Tensor preprocess_image(const at::Tensor& image, const Preprocess& spec,
                            const DecodeLimits& limits, const std::string& name) {
  if (!image.defined() || image.scalar_type() != at::kByte || image.dim() != 3 ||
      (image.size(2) != 1 && image.size(2) != 3)) {
    throw InputError(
        "preprocess expects a uint8 [height, width, channels] image with 1 or 3 channels, got " +
        (image.defined()
             ? std::string(c10::toString(image.scalar_type())) + " " + c10::str(image.sizes())
             : std::string("an undefined tensor")));
  }
  validate_preprocess(spec);
  const int64_t height = image.size(0);
  const int64_t width = image.size(1);
  if (height == 0 || width == 0) {
    throw InputError("cannot preprocess the image" + of_file(name) + ": it has no pixels (" +
                     size_text(width, height) + ")");
  }
  at::Tensor hwc = image;
  if (image.size(2) != channels_of(spec.color)) {
    hwc = to_color(image.cpu().contiguous(), image.size(2) == 1 ? Layout::kGray : Layout::kRGB,
                   spec.color)
              .to(image.device());
  }

  const auto [new_height, new_width] = resized_size(height, width, spec.resize, limits, name);
  if (spec.crop > new_height || spec.crop > new_width) {  // only possible with resize = 0
    throw OptionError("the " + std::to_string(spec.crop) + "x" + std::to_string(spec.crop) +
                      " centre crop does not fit in the image" + of_file(name) + " (" +
                      size_text(width, height) +
                      ", not resized as resize is 0); resize it or choose a smaller crop");
  }

  // NCHW: a view of the HWC data, in channels-last layout.
  at::Tensor x = hwc.contiguous().permute({2, 0, 1}).unsqueeze(0);
  if (new_height != height || new_width != width) {
    // ATen's antialiased bilinear resampling follows Pillow's: a triangle filter whose support
    // grows with the reduction factor, weights normalised per output pixel, one pass per axis.
    // On the CPU it runs on the uint8 samples in fixed point and rounds to uint8 as Pillow
    // does: almost every sample equals Pillow's, none is more than one step (1/255) off. On
    // float32 data it would be tens of times slower, need a float copy of the whole image, and
    // differ from Pillow by up to 1.002 steps (Pillow rounds twice; float32 coordinates).
    // Other devices have no uint8 kernel: they resample in float32.
    if (!x.is_cpu()) {
      x = x.to(at::kFloat, /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::Contiguous);
    }
    x = at::_upsample_bilinear2d_aa(x, {new_height, new_width}, /*align_corners=*/false,
                                    std::nullopt, std::nullopt);
  }
  if (spec.crop > 0) {
    x = x.narrow(2, crop_offset(new_height, spec.crop), spec.crop)
            .narrow(3, crop_offset(new_width, spec.crop), spec.crop);
  }
  // ToTensor, then Normalize: float32 arithmetic as torchvision does it.
  x = x.squeeze(0)
          .to(at::kFloat, /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::Contiguous)
          .div(255);
  if (!spec.mean.empty()) {
    const std::vector<float> mean(spec.mean.begin(), spec.mean.end());
    const std::vector<float> std(spec.std.begin(), spec.std.end());
    const auto options = x.options();
    x = x.sub(at::tensor(mean, options).view({-1, 1, 1}))
            .div(at::tensor(std, options).view({-1, 1, 1}));
  }
  return x.contiguous();
}

}  // namespace

at::Tensor preprocess(const at::Tensor& hwc_uint8, const Preprocess& spec,
                      const DecodeLimits& limits) {
  try {
    return preprocess_image(hwc_uint8, spec, limits, "");
  } catch (const c10::Error& e) {
    throw InputError("cannot preprocess the image: " + first_line(e.what_without_backtrace()));
  }
}

at::Tensor load_image(const std::string& path, const Preprocess& spec, const DecodeLimits& limits) {
  validate_preprocess(spec);  // before reading the file
  const at::Tensor image = decode_image(path, spec.color, limits);
  try {
    return preprocess_image(image, spec, limits, path);
  } catch (const c10::Error& e) {
    throw InputError("cannot preprocess " + quoted(path) + ": " +
                     first_line(e.what_without_backtrace()));
  }
}

}  // namespace tsnative
