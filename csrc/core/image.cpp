#include "core/image.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
// jpeglib.h needs FILE and size_t declared first.
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "core/errors.h"

// libjpeg and libpng report fatal errors by longjmp. Every call into them is made from a small
// "guarded" function that holds the setjmp and has no local with a destructor, so a longjmp
// never skips a C++ destructor; the C++ objects (tensors, buffers) live in the caller, which
// turns a failed phase into an InputError.

namespace tsnative {
namespace {

std::string size_text(int64_t width, int64_t height) {
  return std::to_string(width) + "x" + std::to_string(height);
}

// ---- Formats --------------------------------------------------------------------------------

enum class Format { kJpeg, kPng, kOther };

constexpr size_t kMagicBytes = 12;  // enough for every signature below

bool starts_with(const uint8_t* data, size_t size, const char* magic, size_t length,
                 size_t offset = 0) {
  return size >= offset + length && std::memcmp(data + offset, magic, length) == 0;
}

Format detect_format(const uint8_t* data, size_t size) {
  if (starts_with(data, size, "\xFF\xD8\xFF", 3)) {
    return Format::kJpeg;
  }
  if (starts_with(data, size, "\x89PNG\r\n\x1A\n", 8)) {
    return Format::kPng;
  }
  return Format::kOther;
}

// Names image formats that users commonly have but tsnative does not read, for the message.
const char* other_image_format(const uint8_t* data, size_t size) {
  if (starts_with(data, size, "GIF87a", 6) || starts_with(data, size, "GIF89a", 6)) {
    return "GIF";
  }
  if (starts_with(data, size, "RIFF", 4) && starts_with(data, size, "WEBP", 4, 8)) {
    return "WebP";
  }
  if (starts_with(data, size, "II*\0", 4) || starts_with(data, size, "MM\0*", 4)) {
    return "TIFF";
  }
  if (starts_with(data, size, "ftyp", 4, 4)) {
    if (starts_with(data, size, "avi", 3, 8)) {
      return "AVIF";
    }
    if (starts_with(data, size, "hei", 3, 8) || starts_with(data, size, "mif1", 4, 8)) {
      return "HEIF";
    }
  }
  if (starts_with(data, size, "BM", 2) && starts_with(data, size, "\0\0\0\0", 4, 6)) {
    return "BMP";  // "BM", the file size, then four reserved zero bytes
  }
  return nullptr;
}

[[noreturn]] void throw_not_an_image(const std::string& name, const uint8_t* data, size_t size) {
  if (const char* format = other_image_format(data, size)) {
    throw InputError(quoted(name) + " is a " + format +
                     " image, which is unsupported (tsnative reads JPEG and PNG)");
  }
  throw InputError(quoted(name) + " is not a JPEG or PNG image");
}

void check_pixel_count(const std::string& name, const char* format, int64_t width, int64_t height,
                       const DecodeLimits& limits) {
  if (width <= 0 || height <= 0) {
    throw InputError("cannot decode " + std::string(format) + " " + quoted(name) +
                     ": it has no pixels (" + size_text(width, height) + ")");
  }
  // Both sides fit in 31 bits (libjpeg: 16, libpng: 31), so the product cannot overflow.
  if (width * height > limits.max_pixels) {
    throw InputError(quoted(name) + " has " + std::to_string(width * height) + " pixels (" +
                     size_text(width, height) + "), more than the limit of " +
                     std::to_string(limits.max_pixels) + " (a decompression bomb?)");
  }
}

// ---- Pixel conversions, exactly as Pillow's Convert.c ---------------------------------------

// How a decoder hands over pixels: interleaved 8-bit samples.
enum class Layout { kGray, kGrayAlpha, kRGB, kRGBA, kInvertedCMYK };

int channels_of(Layout layout) {
  switch (layout) {
    case Layout::kGray:
      return 1;
    case Layout::kGrayAlpha:
      return 2;
    case Layout::kRGB:
      return 3;
    default:
      return 4;
  }
}

int channels_of(ColorMode color) { return color == ColorMode::kRGB ? 3 : 1; }

// Pillow's ITU-R 601-2 luma in 16-bit fixed point (L24 in Convert.c). Exact for r = g = b.
inline uint8_t luma(uint32_t r, uint32_t g, uint32_t b) {
  return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

// Pillow's cmyk2rgb for one channel: (255 - k) - round(c * (255 - k) / 255) (MULDIV255).
inline uint8_t cmyk_channel(uint32_t c, uint32_t not_k) {
  const uint32_t product = c * not_k + 128;
  return static_cast<uint8_t>(not_k - (((product >> 8) + product) >> 8));
}

// Writes one pixel of `layout` as RGB. Alpha is dropped without compositing, as Pillow's
// convert("RGB") does. CMYK JPEGs are stored inverted (Adobe's convention, which Pillow always
// assumes: rawmode "CMYK;I"), so the samples are un-inverted first.
template <Layout L>
inline void pixel_to_rgb(const uint8_t* in, uint8_t* rgb) {
  if constexpr (L == Layout::kGray || L == Layout::kGrayAlpha) {
    rgb[0] = rgb[1] = rgb[2] = in[0];
  } else if constexpr (L == Layout::kRGB || L == Layout::kRGBA) {
    rgb[0] = in[0];
    rgb[1] = in[1];
    rgb[2] = in[2];
  } else {
    const uint32_t not_k = in[3];  // 255 - K, with K = 255 - in[3]
    rgb[0] = cmyk_channel(255u - in[0], not_k);
    rgb[1] = cmyk_channel(255u - in[1], not_k);
    rgb[2] = cmyk_channel(255u - in[2], not_k);
  }
}

template <Layout L>
void convert_pixels(const uint8_t* in, uint8_t* out, int64_t count, ColorMode color) {
  constexpr int in_channels = L == Layout::kGray        ? 1
                              : L == Layout::kGrayAlpha ? 2
                              : L == Layout::kRGB       ? 3
                                                        : 4;
  if (color == ColorMode::kRGB) {
    for (int64_t i = 0; i < count; ++i, in += in_channels, out += 3) {
      pixel_to_rgb<L>(in, out);
    }
  } else {
    uint8_t rgb[3];
    for (int64_t i = 0; i < count; ++i, in += in_channels) {
      pixel_to_rgb<L>(in, rgb);
      *out++ = luma(rgb[0], rgb[1], rgb[2]);  // RGB -> L, as Pillow converts every mode to L
    }
  }
}

// Converts a contiguous uint8 [H, W, channels_of(layout)] tensor to [H, W, channels_of(color)].
at::Tensor to_color(const at::Tensor& native, Layout layout, ColorMode color) {
  if ((layout == Layout::kRGB && color == ColorMode::kRGB) ||
      (layout == Layout::kGray && color == ColorMode::kGrayscale)) {
    return native;
  }
  const int64_t height = native.size(0);
  const int64_t width = native.size(1);
  at::Tensor out = at::empty({height, width, channels_of(color)}, at::kByte);
  const uint8_t* in = native.data_ptr<uint8_t>();
  uint8_t* o = out.data_ptr<uint8_t>();
  const int64_t count = height * width;
  switch (layout) {
    case Layout::kGray:
      convert_pixels<Layout::kGray>(in, o, count, color);
      break;
    case Layout::kGrayAlpha:
      convert_pixels<Layout::kGrayAlpha>(in, o, count, color);
      break;
    case Layout::kRGB:
      convert_pixels<Layout::kRGB>(in, o, count, color);
      break;
    case Layout::kRGBA:
      convert_pixels<Layout::kRGBA>(in, o, count, color);
      break;
    case Layout::kInvertedCMYK:
      convert_pixels<Layout::kInvertedCMYK>(in, o, count, color);
      break;
  }
  return out;
}

// ---- JPEG (libjpeg-turbo) -------------------------------------------------------------------

struct JpegErrorManager {
  jpeg_error_mgr pub;  // first: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated = false;
  bool too_many_scans = false;
};

struct JpegProgress {
  jpeg_progress_mgr pub;  // first, as above
  int64_t max_scans = 0;
};

// Replaces libjpeg's error_exit, which prints and calls exit(): keep the message, jump back.
[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
  auto* manager = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, manager->message);
  std::longjmp(manager->jump, 1);
}

// Replaces emit_message, which prints warnings. Like Pillow, warnings that leave the pixel data
// intact (extraneous bytes between markers, an unknown JFIF revision, ...) are ignored; those
// that mean pixels are missing or garbage are errors, where Pillow would have filled in grey.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level >= 0) {
    return;  // trace messages
  }
  auto* manager = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:  // "Premature end of JPEG file"
      manager->truncated = true;
      jpeg_fail(cinfo);
    case JWRN_HIT_MARKER:     // "Corrupt JPEG data: premature end of data segment"
    case JWRN_HUFF_BAD_CODE:  // "Corrupt JPEG data: bad Huffman code"
    case JWRN_MUST_RESYNC:    // "Corrupt JPEG data: found marker ... instead of RST"
      jpeg_fail(cinfo);
    default:
      cinfo->err->num_warnings++;
  }
}

// Called while a progressive JPEG's scans are read: refuses files with too many scans.
void jpeg_check_scans(j_common_ptr cinfo) {
  if (!cinfo->is_decompressor) {
    return;
  }
  const auto* progress = reinterpret_cast<const JpegProgress*>(cinfo->progress);
  if (reinterpret_cast<j_decompress_ptr>(cinfo)->input_scan_number > progress->max_scans) {
    auto* manager = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    manager->too_many_scans = true;
    std::longjmp(manager->jump, 1);
  }
}

// Guarded: create the decompressor and read the header.
bool jpeg_read_header_guarded(jpeg_decompress_struct* cinfo, JpegErrorManager* manager,
                              const uint8_t* data, size_t size) {
  if (setjmp(manager->jump)) {
    return false;
  }
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(cinfo, TRUE);
  return true;
}

// Guarded: decompress every row into `out` (rows of `row_bytes` bytes).
bool jpeg_decompress_guarded(jpeg_decompress_struct* cinfo, JpegErrorManager* manager, uint8_t* out,
                             size_t row_bytes) {
  if (setjmp(manager->jump)) {
    return false;
  }
  jpeg_start_decompress(cinfo);
  constexpr int kRowsPerCall = 16;
  JSAMPROW rows[kRowsPerCall];
  while (cinfo->output_scanline < cinfo->output_height) {
    const JDIMENSION first = cinfo->output_scanline;
    const JDIMENSION count =
        std::min<JDIMENSION>(kRowsPerCall, cinfo->output_height - cinfo->output_scanline);
    for (JDIMENSION i = 0; i < count; ++i) {
      rows[i] = out + (first + i) * row_bytes;
    }
    jpeg_read_scanlines(cinfo, rows, count);
  }
  // No jpeg_finish_decompress: every pixel has been read, and what follows them (the EOI
  // marker, trailing bytes) cannot change them.
  return true;
}

struct JpegDestroyer {
  jpeg_decompress_struct* cinfo;
  ~JpegDestroyer() { jpeg_destroy_decompress(cinfo); }
};

at::Tensor decode_jpeg(const uint8_t* data, size_t size, const std::string& name, ColorMode color,
                       const DecodeLimits& limits) {
  jpeg_decompress_struct cinfo{};
  JpegErrorManager manager{};
  cinfo.err = jpeg_std_error(&manager.pub);
  manager.pub.error_exit = jpeg_fail;
  manager.pub.emit_message = jpeg_message;
  JpegProgress progress{};
  progress.pub.progress_monitor = jpeg_check_scans;
  progress.max_scans = limits.max_jpeg_scans;
  JpegDestroyer destroyer{&cinfo};

  auto fail = [&]() -> InputError {
    if (manager.too_many_scans) {
      return InputError(quoted(name) + " is a progressive JPEG with more than " +
                        std::to_string(limits.max_jpeg_scans) +
                        " scans, the limit (a decompression bomb?)");
    }
    std::string message = "cannot decode JPEG " + quoted(name) + ": " + manager.message;
    if (manager.truncated) {
      message += " (the file is truncated)";
    }
    return InputError(message);
  };

  if (!jpeg_read_header_guarded(&cinfo, &manager, data, size)) {
    throw fail();
  }
  check_pixel_count(name, "JPEG", cinfo.image_width, cinfo.image_height, limits);
  Layout layout;
  switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
      cinfo.out_color_space = JCS_GRAYSCALE;
      layout = Layout::kGray;
      break;
    case JCS_YCbCr:
    case JCS_RGB:
      cinfo.out_color_space = JCS_RGB;
      layout = Layout::kRGB;
      break;
    case JCS_CMYK:
    case JCS_YCCK:  // libjpeg converts YCCK to CMYK
      cinfo.out_color_space = JCS_CMYK;
      layout = Layout::kInvertedCMYK;
      break;
    default:
      throw InputError(quoted(name) + " is a JPEG with " + std::to_string(cinfo.num_components) +
                       " colour components, which is unsupported (1, 3 or 4 are read)");
  }
  cinfo.progress = &progress.pub;

  const int64_t height = cinfo.image_height;
  const int64_t width = cinfo.image_width;
  const int channels = channels_of(layout);
  at::Tensor native = at::empty({height, width, channels}, at::kByte);
  if (!jpeg_decompress_guarded(&cinfo, &manager, native.data_ptr<uint8_t>(),
                               static_cast<size_t>(width) * channels)) {
    throw fail();
  }
  if (cinfo.output_width != width || cinfo.output_height != height ||
      cinfo.output_components != channels) {
    throw InputError("cannot decode JPEG " + quoted(name) + ": unexpected output size");
  }
  return to_color(native, layout, color);
}

// ---- PNG (libpng) ---------------------------------------------------------------------------

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

// ---- Files ----------------------------------------------------------------------------------

at::Tensor decode(const uint8_t* data, size_t size, const std::string& name, ColorMode color,
                  const DecodeLimits& limits) {
  if (size == 0) {
    throw InputError("cannot read image " + quoted(name) + ": the file is empty");
  }
  try {
    switch (detect_format(data, size)) {
      case Format::kJpeg:
        return decode_jpeg(data, size, name, color, limits);
      case Format::kPng:
        return decode_png(data, size, name, color, limits);
      default:
        throw_not_an_image(name, data, size);
    }
  } catch (const c10::Error& e) {  // at::empty failing, above all
    throw InputError("cannot decode " + quoted(name) + ": " +
                     first_line(e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    throw InputError("cannot decode " + quoted(name) + ": out of memory");
  }
}

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

// Reads a whole file, but looks at its first bytes before reading the rest: a large file that
// is not an image is refused without being read.
std::vector<uint8_t> read_image_file(const std::string& path) {
  if (const auto problem = file_problem(path); !problem.empty()) {
    throw InputError("cannot read image " + quoted(path) + ": " + problem);
  }
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    throw InputError("cannot read image " + quoted(path) + ": " + std::strerror(errno));
  }
  std::vector<uint8_t> bytes(kMagicBytes);
  bytes.resize(std::fread(bytes.data(), 1, bytes.size(), file.get()));
  if (bytes.empty() && !std::ferror(file.get())) {
    throw InputError("cannot read image " + quoted(path) + ": the file is empty");
  }
  if (!std::ferror(file.get()) && detect_format(bytes.data(), bytes.size()) == Format::kOther) {
    throw_not_an_image(path, bytes.data(), bytes.size());
  }
  constexpr size_t kChunk = size_t{1} << 20;
  while (!std::feof(file.get()) && !std::ferror(file.get())) {
    const size_t used = bytes.size();
    bytes.resize(used + kChunk);
    bytes.resize(used + std::fread(bytes.data() + used, 1, kChunk, file.get()));
  }
  if (std::ferror(file.get())) {
    throw InputError("cannot read image " + quoted(path) + ": " + std::strerror(errno));
  }
  return bytes;
}

// ---- Preprocessing --------------------------------------------------------------------------

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

at::Tensor decode_image(const std::string& path, ColorMode color, const DecodeLimits& limits) {
  const std::vector<uint8_t> bytes = read_image_file(path);
  return decode(bytes.data(), bytes.size(), path, color, limits);
}

at::Tensor decode_image_bytes(const std::vector<uint8_t>& bytes, const std::string& name,
                              ColorMode color, const DecodeLimits& limits) {
  return decode(bytes.data(), bytes.size(), name, color, limits);
}

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
