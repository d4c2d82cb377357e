// Writes small PNG and JPEG images in memory, with libpng and libjpeg, for the image tests:
// images whose pixels the tests know by hand.
#pragma once

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>
#include <png.h>

namespace tsnative::testing {

// ---- PNG ------------------------------------------------------------------------------------

struct PngSpec {
  PngSpec(int width, int height, int color_type, int bit_depth, std::vector<uint16_t> samples)
      : width(width),
        height(height),
        color_type(color_type),
        bit_depth(bit_depth),
        samples(std::move(samples)) {}

  int width = 0;
  int height = 0;
  int color_type = PNG_COLOR_TYPE_RGB;
  int bit_depth = 8;
  std::vector<uint16_t> samples;    // row-major, interleaved; palette indices for palettes
  std::vector<png_color> palette;   // PNG_COLOR_TYPE_PALETTE only
  std::vector<uint8_t> trns_alpha;  // a tRNS chunk for a palette
  bool interlaced = false;
};

namespace detail {

inline void png_append(png_structp png, png_bytep data, size_t size) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + size);
}

inline void png_quiet(png_structp, png_const_charp) {}

inline void png_fail(png_structp png, png_const_charp) { png_longjmp(png, 1); }

inline int png_channels(int color_type) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_PALETTE:
      return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      return 2;
    case PNG_COLOR_TYPE_RGB:
      return 3;
    default:
      return 4;
  }
}

// No C++ object with a destructor is created here: libpng may longjmp out.
inline bool png_write_guarded(png_structp png, png_infop info, const PngSpec* spec,
                              png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) {
    return false;
  }
  png_set_IHDR(png, info, spec->width, spec->height, spec->bit_depth, spec->color_type,
               spec->interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!spec->palette.empty()) {
    png_set_PLTE(png, info, spec->palette.data(), static_cast<int>(spec->palette.size()));
  }
  if (!spec->trns_alpha.empty()) {
    png_set_tRNS(png, info, spec->trns_alpha.data(), static_cast<int>(spec->trns_alpha.size()),
                 nullptr);
  }
  png_write_info(png, info);
  if (spec->bit_depth < 8) {
    png_set_packing(png);  // rows hold one sample per byte
  }
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

}  // namespace detail

// Encodes spec as a PNG file's bytes; 16-bit samples are written big-endian, as PNG stores them.
inline std::vector<uint8_t> encode_png(const PngSpec& spec) {
  const int channels = detail::png_channels(spec.color_type);
  const size_t row_samples = static_cast<size_t>(spec.width) * channels;
  const size_t sample_bytes = spec.bit_depth == 16 ? 2 : 1;
  if (spec.samples.size() != row_samples * spec.height) {
    throw std::invalid_argument("encode_png: wrong number of samples");
  }
  std::vector<uint8_t> pixels(spec.samples.size() * sample_bytes);
  for (size_t i = 0; i < spec.samples.size(); ++i) {
    if (sample_bytes == 2) {
      pixels[2 * i] = static_cast<uint8_t>(spec.samples[i] >> 8);
      pixels[2 * i + 1] = static_cast<uint8_t>(spec.samples[i] & 0xFF);
    } else {
      pixels[i] = static_cast<uint8_t>(spec.samples[i]);
    }
  }
  std::vector<png_bytep> rows(spec.height);
  for (int y = 0; y < spec.height; ++y) {
    rows[y] = pixels.data() + y * row_samples * sample_bytes;
  }
  std::vector<uint8_t> out;
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, detail::png_fail, detail::png_quiet);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, detail::png_append, nullptr);
  const bool ok = detail::png_write_guarded(png, info, &spec, rows.data());
  png_destroy_write_struct(&png, &info);
  if (!ok) {
    throw std::runtime_error("encode_png: libpng failed");
  }
  return out;
}

// ---- JPEG -----------------------------------------------------------------------------------

struct JpegSpec {
  int width = 0;
  int height = 0;
  int components = 3;
  J_COLOR_SPACE in_color_space = JCS_RGB;      // what `samples` hold
  J_COLOR_SPACE jpeg_color_space = JCS_YCbCr;  // what the file stores
  std::vector<uint8_t> samples;                // row-major, interleaved
  int quality = 100;
  bool progressive = false;
  bool subsample_chroma = false;  // 4:2:0 instead of 4:4:4
};

namespace detail {

struct JpegErrors {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
};

inline void jpeg_fail(j_common_ptr cinfo) {
  std::longjmp(reinterpret_cast<JpegErrors*>(cinfo->err)->jump, 1);
}

// No C++ object with a destructor is created here: libjpeg may longjmp out.
inline bool jpeg_write_guarded(jpeg_compress_struct* cinfo, JpegErrors* errors,
                               const JpegSpec* spec, unsigned char** buffer, unsigned long* size) {
  if (setjmp(errors->jump)) {
    return false;
  }
  jpeg_create_compress(cinfo);
  jpeg_mem_dest(cinfo, buffer, size);
  cinfo->image_width = spec->width;
  cinfo->image_height = spec->height;
  cinfo->input_components = spec->components;
  cinfo->in_color_space = spec->in_color_space;
  jpeg_set_defaults(cinfo);
  jpeg_set_colorspace(cinfo, spec->jpeg_color_space);  // CMYK / YCCK: writes an Adobe marker
  jpeg_set_quality(cinfo, spec->quality, TRUE);
  for (int i = 0; i < cinfo->num_components; ++i) {  // luma 2x2 and chroma 1x1 is 4:2:0
    const int factor = (spec->subsample_chroma && i == 0) ? 2 : 1;
    cinfo->comp_info[i].h_samp_factor = factor;
    cinfo->comp_info[i].v_samp_factor = factor;
  }
  if (spec->progressive) {
    jpeg_simple_progression(cinfo);
  }
  jpeg_start_compress(cinfo, TRUE);
  const size_t stride = static_cast<size_t>(spec->width) * spec->components;
  while (cinfo->next_scanline < cinfo->image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(spec->samples.data() + cinfo->next_scanline * stride);
    jpeg_write_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_compress(cinfo);
  return true;
}

}  // namespace detail

// Encodes spec as a JPEG file's bytes (baseline or progressive).
inline std::vector<uint8_t> encode_jpeg(const JpegSpec& spec) {
  if (spec.samples.size() != static_cast<size_t>(spec.width) * spec.height * spec.components) {
    throw std::invalid_argument("encode_jpeg: wrong number of samples");
  }
  jpeg_compress_struct cinfo{};
  detail::JpegErrors errors{};
  cinfo.err = jpeg_std_error(&errors.pub);
  errors.pub.error_exit = detail::jpeg_fail;
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  const bool ok = detail::jpeg_write_guarded(&cinfo, &errors, &spec, &buffer, &size);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> out;
  if (ok) {
    out.assign(buffer, buffer + size);
  }
  std::free(buffer);
  if (!ok) {
    throw std::runtime_error("encode_jpeg: libjpeg failed");
  }
  return out;
}

}  // namespace tsnative::testing
