#include "core/image/decoders.h"

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <vector>

#include <ATen/ATen.h>
// jpeglib.h needs FILE and size_t declared first.
#include <jerror.h>
#include <jpeglib.h>

#include "core/errors.h"
#include "core/image/pixels.h"

namespace tsnative::image {
namespace {

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

}  // namespace

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

}  // namespace tsnative::image
