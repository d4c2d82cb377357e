#include "core/image/pixels.h"

#include <ATen/ATen.h>

namespace tsnative::image {
namespace {

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

}  // namespace

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

std::string size_text(int64_t width, int64_t height) {
  return std::to_string(width) + "x" + std::to_string(height);
}

}  // namespace tsnative::image
