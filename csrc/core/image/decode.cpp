// decode_image: a file's bytes, told apart by their magic bytes, to the decoder of their
// format (decoders.h); the formats it does not read, named in its message.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

#include <c10/util/Exception.h>

#include "core/errors.h"
#include "core/image.h"
#include "core/image/decoders.h"
#include "core/image/pixels.h"

namespace tsnative {
namespace image {

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

}  // namespace image

namespace {

using image::decode_jpeg;
using image::decode_png;

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

}  // namespace

at::Tensor decode_image(const std::string& path, ColorMode color, const DecodeLimits& limits) {
  const std::vector<uint8_t> bytes = read_image_file(path);
  return decode(bytes.data(), bytes.size(), path, color, limits);
}

at::Tensor decode_image_bytes(const std::vector<uint8_t>& bytes, const std::string& name,
                              ColorMode color, const DecodeLimits& limits) {
  return decode(bytes.data(), bytes.size(), name, color, limits);
}

}  // namespace tsnative
