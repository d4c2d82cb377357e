// The JPEG (libjpeg-turbo) and PNG (libpng) decoders behind decode_image (decode.cpp, which
// tells the formats apart by their magic bytes). Each decodes a whole file in memory to uint8
// [H, W, channels_of(color)] as Pillow's Image.open(...).convert() does, and throws InputError
// naming `name` and the cause.
//
// libjpeg and libpng report fatal errors by longjmp. Every call into them is made from a small
// "guarded" function that holds the setjmp and has no local with a destructor, so a longjmp
// never skips a C++ destructor; the C++ objects (tensors, buffers) live in the caller, which
// turns a failed phase into an InputError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "core/image.h"

namespace tsnative::image {

at::Tensor decode_jpeg(const uint8_t* data, size_t size, const std::string& name, ColorMode color,
                       const DecodeLimits& limits);
at::Tensor decode_png(const uint8_t* data, size_t size, const std::string& name, ColorMode color,
                      const DecodeLimits& limits);

// Throws InputError if a header's `width` x `height` has no pixels or more than the limit:
// checked before any pixel memory is allocated. `format` ("JPEG") names the file's kind.
void check_pixel_count(const std::string& name, const char* format, int64_t width, int64_t height,
                       const DecodeLimits& limits);

}  // namespace tsnative::image
