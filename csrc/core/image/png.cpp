#include "core/image/decoders.h"

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <vector>

#include <ATen/ATen.h>
#include <png.h>

#include "core/errors.h"
#include "core/image/pixels.h"

namespace tsnative::image {
namespace {

struct PngReader {
  const uint8_t* data;
  size_t size;
  size_t offset = 0;
  bool truncated = false;
  char message[256] = {};
};

// Replaces libpng's error function, which prints: keep the message, jump back.
void png_fail(png_structp png, png_const_charp message) {
  auto* reader = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(reader->message, sizeof reader->message, "%s", message);
  png_longjmp(png, 1);
}

// Warnings (a bad CRC in an ancillary chunk, an iCCP profile libpng dislikes, ...) do not
// affect the pixels: ignored, as Pillow does.
void png_warn(png_structp, png_const_charp) {}

void png_read_memory(png_structp png, png_bytep out, size_t count) {
  auto* reader = static_cast<PngReader*>(png_get_io_ptr(png));
  if (count > reader->size - reader->offset) {
    reader->truncated = true;
    png_error(png, "unexpected end of file");
  }
  std::memcpy(out, reader->data + reader->offset, count);
  reader->offset += count;
}

struct PngHeader {
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  int bit_depth = 0;
  int color_type = 0;
};

// Guarded: read the chunks up to the image data and choose the transformations.
bool png_read_header_guarded(png_structp png, png_infop info, PngHeader* header) {
  if (setjmp(png_jmpbuf(png))) {
    return false;
  }
  png_read_info(png, info);
  png_get_IHDR(png, info, &header->width, &header->height, &header->bit_depth, &header->color_type,
               nullptr, nullptr, nullptr);
  // Palette indices become RGB (RGBA if there is a tRNS chunk: the alpha is dropped later, as
  // Pillow's convert("RGB") of a "P" image ignores transparency); 1, 2 and 4-bit gray become
  // 8-bit by replicating bits (0..3 -> 0, 85, 170, 255), as Pillow's L;2 / L;4 unpackers do.
  // No gamma, no tRNS-to-alpha, no 16-bit stripping: the 16-bit reduction is Pillow's, below.
  if (header->color_type == PNG_COLOR_TYPE_PALETTE) {
    png_set_palette_to_rgb(png);
  }
  if (header->color_type == PNG_COLOR_TYPE_GRAY && header->bit_depth < 8) {
    png_set_expand_gray_1_2_4_to_8(png);
  }
  png_set_interlace_handling(png);
  return true;
}

bool png_update_guarded(png_structp png, png_infop info) {
  if (setjmp(png_jmpbuf(png))) {
    return false;
  }
  png_read_update_info(png, info);
  return true;
}

bool png_read_image_guarded(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) {
    return false;
  }
  // No png_read_end: every pixel has been read, and the chunks after them (IEND, text, ...)
  // cannot change them.
  png_read_image(png, rows);
  return true;
}

struct PngDestroyer {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngDestroyer() {
    if (png != nullptr) {
      png_destroy_read_struct(&png, info != nullptr ? &info : nullptr, nullptr);
    }
  }
};

// Reduces 16-bit big-endian samples to 8 bits as Pillow does: 16-bit grayscale opens as mode
// "I;16", whose conversion to L or RGB clamps values to 255 (so most of a 16-bit photo turns
// white, in Pillow and here alike); every other 16-bit PNG opens with a ";16B" raw mode that
// keeps the high byte.
void reduce_16_bit(const uint8_t* in, uint8_t* out, int64_t samples, bool clamp) {
  if (clamp) {
    for (int64_t i = 0; i < samples; ++i, in += 2) {
      out[i] = in[0] != 0 ? 255 : in[1];
    }
  } else {
    for (int64_t i = 0; i < samples; ++i, in += 2) {
      out[i] = in[0];
    }
  }
}

}  // namespace

at::Tensor decode_png(const uint8_t* data, size_t size, const std::string& name, ColorMode color,
                      const DecodeLimits& limits) {
  PngReader reader{data, size};
  PngDestroyer destroyer;
  destroyer.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, png_fail, png_warn);
  if (destroyer.png == nullptr) {
    throw InputError("cannot decode PNG " + quoted(name) + ": libpng could not start");
  }
  destroyer.info = png_create_info_struct(destroyer.png);
  if (destroyer.info == nullptr) {
    throw InputError("cannot decode PNG " + quoted(name) + ": libpng could not start");
  }
  png_structp png = destroyer.png;
  png_infop info = destroyer.info;
  png_set_read_fn(png, &reader, png_read_memory);

  auto fail = [&]() {
    std::string message = "cannot decode PNG " + quoted(name) + ": " + reader.message;
    if (reader.truncated) {
      message += " (the file is truncated)";
    }
    return InputError(message);
  };

  PngHeader header;
  if (!png_read_header_guarded(png, info, &header)) {
    throw fail();
  }
  check_pixel_count(name, "PNG", header.width, header.height, limits);
  if (!png_update_guarded(png, info)) {
    throw fail();
  }
  const int64_t height = header.height;
  const int64_t width = header.width;
  const int channels = png_get_channels(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  if (channels < 1 || channels > 4 || (bit_depth != 8 && bit_depth != 16) ||
      row_bytes != static_cast<size_t>(width) * channels * (bit_depth / 8)) {
    throw InputError(quoted(name) + " is a PNG of an unsupported kind (" +
                     std::to_string(channels) + " channels of " + std::to_string(bit_depth) +
                     " bits)");
  }

  at::Tensor native = at::empty({height, width, channels}, at::kByte);
  at::Tensor wide;  // 16-bit samples, before the reduction to 8 bits
  uint8_t* pixels = native.data_ptr<uint8_t>();
  if (bit_depth == 16) {
    wide = at::empty({height, static_cast<int64_t>(row_bytes)}, at::kByte);
    pixels = wide.data_ptr<uint8_t>();
  }
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  for (int64_t y = 0; y < height; ++y) {
    rows[y] = pixels + y * row_bytes;
  }
  if (!png_read_image_guarded(png, rows.data())) {
    throw fail();
  }
  if (bit_depth == 16) {
    reduce_16_bit(wide.data_ptr<uint8_t>(), native.data_ptr<uint8_t>(), height * width * channels,
                  /*clamp=*/channels == 1);
  }
  const Layout layouts[] = {Layout::kGray, Layout::kGrayAlpha, Layout::kRGB, Layout::kRGBA};
  return to_color(native, layouts[channels - 1], color);
}

}  // namespace tsnative::image
