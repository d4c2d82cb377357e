// Pixel layouts and their conversion to what a model takes, exactly as Pillow's Convert.c
// converts them: what the decoders (decoders.h) hand over and preprocessing (preprocess.cpp)
// converts between RGB and grayscale.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "core/image.h"

namespace tsnative::image {

// How a decoder hands over pixels: interleaved 8-bit samples.
enum class Layout { kGray, kGrayAlpha, kRGB, kRGBA, kInvertedCMYK };

int channels_of(Layout layout);
int channels_of(ColorMode color);

// Converts a contiguous uint8 [H, W, channels_of(layout)] tensor to [H, W, channels_of(color)].
at::Tensor to_color(const at::Tensor& native, Layout layout, ColorMode color);

// "640x480", as messages give an image's size.
std::string size_text(int64_t width, int64_t height);

}  // namespace tsnative::image
