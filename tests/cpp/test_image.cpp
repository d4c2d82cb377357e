// Decoding and preprocessing images in the core. Expected values are known by hand: images
// written here with libpng / libjpeg, and Pillow's formulas worked out on paper (each checked
// against Pillow itself; tests/test_image_parity.py compares whole photos with Pillow).
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/errors.h"
#include "core/image.h"
#include "image_test_support.h"
#include "test_support.h"

namespace tsnative {
namespace {

using testing::encode_jpeg;
using testing::encode_png;
using testing::JpegSpec;
using testing::PngSpec;
using tsnative_test::TempDir;

// The uint8 [H, W, C] tensor holding `values`, row-major and interleaved.
at::Tensor hwc(int64_t height, int64_t width, int64_t channels, const std::vector<int>& values) {
  std::vector<uint8_t> bytes(values.begin(), values.end());
  return at::tensor(at::ArrayRef<uint8_t>(bytes), at::kByte).view({height, width, channels});
}

std::vector<uint16_t> samples(const std::vector<int>& values) {
  return std::vector<uint16_t>(values.begin(), values.end());
}

// Deterministic, varied samples (a hash of the index) for lossless round trips.
std::vector<uint16_t> pattern(size_t count, int max_value = 255) {
  std::vector<uint16_t> out(count);
  for (size_t i = 0; i < count; ++i) {
    out[i] = static_cast<uint16_t>((i * 2654435761u >> 7) % (max_value + 1));
  }
  return out;
}

at::Tensor tensor_of(const std::vector<uint16_t>& values, int64_t height, int64_t width,
                     int64_t channels) {
  std::vector<int> ints(values.begin(), values.end());
  return hwc(height, width, channels, ints);
}

at::Tensor decode_png_spec(const PngSpec& spec, ColorMode color = ColorMode::kRGB) {
  return decode_image_bytes(encode_png(spec), "test.png", color);
}

// Pillow's L = (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16, spelled out per pixel.
int pillow_luma(int r, int g, int b) { return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; }

// Whether `message` contains every one of `parts` (gtest without gmock's HasSubstr).
::testing::AssertionResult contains_all(const std::string& message,
                                        std::initializer_list<std::string> parts) {
  for (const auto& part : parts) {
    if (message.find(part) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "the message \"" << message << "\" does not contain \"" << part << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

// Runs `call`, which must throw Error; returns the error's message.
template <typename Error, typename Call>
std::string message_of(Call call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error was thrown";
  return "";
}

// ---- Decoding PNG: lossless, so every value is known ------------------------------------------

TEST(ImageDecodePng, RgbIsExact) {
  PngSpec spec{2, 2, PNG_COLOR_TYPE_RGB, 8, samples({255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 34, 56})};
  const at::Tensor image = decode_png_spec(spec);
  EXPECT_EQ(image.scalar_type(), at::kByte);
  EXPECT_TRUE(image.is_contiguous());
  EXPECT_TRUE(at::equal(image, hwc(2, 2, 3, {255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 34, 56})));
}

TEST(ImageDecodePng, GrayscaleModeUsesPillowsLuma) {
  PngSpec spec{2, 2, PNG_COLOR_TYPE_RGB, 8, samples({255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 34, 56})};
  // Pillow: red 76, green 150, blue 29 (and L24 of (12, 34, 56) = 1994264 >> 16 = 30).
  EXPECT_EQ(pillow_luma(12, 34, 56), 30);
  EXPECT_TRUE(
      at::equal(decode_png_spec(spec, ColorMode::kGrayscale), hwc(2, 2, 1, {76, 150, 29, 30})));
}

TEST(ImageDecodePng, LargerImagesAreLossless) {
  for (const bool interlaced : {false, true}) {
    PngSpec spec{33, 17, PNG_COLOR_TYPE_RGB, 8, pattern(33 * 17 * 3)};
    spec.interlaced = interlaced;  // Adam7: seven passes reassembled by libpng
    EXPECT_TRUE(at::equal(decode_png_spec(spec), tensor_of(spec.samples, 17, 33, 3)))
        << "interlaced: " << interlaced;
  }
}

TEST(ImageDecodePng, GrayIsReplicatedToRgb) {
  PngSpec spec{3, 1, PNG_COLOR_TYPE_GRAY, 8, samples({0, 128, 255})};
  EXPECT_TRUE(
      at::equal(decode_png_spec(spec), hwc(1, 3, 3, {0, 0, 0, 128, 128, 128, 255, 255, 255})));
  EXPECT_TRUE(at::equal(decode_png_spec(spec, ColorMode::kGrayscale), hwc(1, 3, 1, {0, 128, 255})));
}

TEST(ImageDecodePng, LowBitDepthGrayIsScaledTo255) {
  // Pillow's "1", "L;2" and "L;4" raw modes, and libpng's expansion: 1 -> 255, 3 -> 255, ...
  PngSpec one{2, 1, PNG_COLOR_TYPE_GRAY, 1, samples({0, 1})};
  EXPECT_TRUE(at::equal(decode_png_spec(one, ColorMode::kGrayscale), hwc(1, 2, 1, {0, 255})));
  PngSpec two{4, 1, PNG_COLOR_TYPE_GRAY, 2, samples({0, 1, 2, 3})};
  EXPECT_TRUE(
      at::equal(decode_png_spec(two, ColorMode::kGrayscale), hwc(1, 4, 1, {0, 85, 170, 255})));
  PngSpec four{3, 1, PNG_COLOR_TYPE_GRAY, 4, samples({0, 7, 15})};
  EXPECT_TRUE(at::equal(decode_png_spec(four, ColorMode::kGrayscale), hwc(1, 3, 1, {0, 119, 255})));
}

TEST(ImageDecodePng, PaletteIndicesBecomeTheirColours) {
  PngSpec spec{3, 2, PNG_COLOR_TYPE_PALETTE, 8, samples({0, 1, 2, 2, 1, 0})};
  spec.palette = {{10, 20, 30}, {200, 40, 60}, {70, 250, 90}};
  const at::Tensor expected =
      hwc(2, 3, 3, {10, 20, 30, 200, 40, 60, 70, 250, 90, 70, 250, 90, 200, 40, 60, 10, 20, 30});
  EXPECT_TRUE(at::equal(decode_png_spec(spec), expected));
  // A tRNS chunk (transparent entries) changes nothing: Pillow's convert("RGB") ignores it.
  spec.trns_alpha = {0, 128};
  EXPECT_TRUE(at::equal(decode_png_spec(spec), expected));
  // 2-bit indices.
  spec.bit_depth = 2;
  EXPECT_TRUE(at::equal(decode_png_spec(spec), expected));
  // Grayscale: Pillow's luma of each palette colour.
  EXPECT_TRUE(at::equal(
      decode_png_spec(spec, ColorMode::kGrayscale),
      hwc(2, 3, 1,
          {pillow_luma(10, 20, 30), pillow_luma(200, 40, 60), pillow_luma(70, 250, 90),
           pillow_luma(70, 250, 90), pillow_luma(200, 40, 60), pillow_luma(10, 20, 30)})));
}

TEST(ImageDecodePng, AlphaIsDroppedNotComposited) {
  // Fully transparent pixels keep their colour (compositing on black would give 0).
  PngSpec rgba{2, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, samples({10, 20, 30, 0, 40, 50, 60, 255})};
  EXPECT_TRUE(at::equal(decode_png_spec(rgba), hwc(1, 2, 3, {10, 20, 30, 40, 50, 60})));
  PngSpec gray_alpha{2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, samples({77, 0, 200, 128})};
  EXPECT_TRUE(at::equal(decode_png_spec(gray_alpha), hwc(1, 2, 3, {77, 77, 77, 200, 200, 200})));
  EXPECT_TRUE(
      at::equal(decode_png_spec(gray_alpha, ColorMode::kGrayscale), hwc(1, 2, 1, {77, 200})));
}

TEST(ImageDecodePng, SixteenBitColourKeepsTheHighByte) {
  // Pillow opens these with the RGB;16B / RGBA;16B / LA;16B raw modes: the high byte.
  PngSpec rgb{2, 1, PNG_COLOR_TYPE_RGB, 16,
              samples({0x1234, 0xFFFF, 0x00FF, 0xAB00, 0x0100, 0x7F80})};
  EXPECT_TRUE(at::equal(decode_png_spec(rgb), hwc(1, 2, 3, {0x12, 0xFF, 0x00, 0xAB, 0x01, 0x7F})));
  PngSpec rgba{1, 1, PNG_COLOR_TYPE_RGB_ALPHA, 16, samples({0x8001, 0x40FF, 0x2000, 0x0000})};
  EXPECT_TRUE(at::equal(decode_png_spec(rgba), hwc(1, 1, 3, {0x80, 0x40, 0x20})));
  PngSpec gray_alpha{2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 16, samples({0x9A55, 0xFFFF, 0x00FF, 0})};
  EXPECT_TRUE(
      at::equal(decode_png_spec(gray_alpha, ColorMode::kGrayscale), hwc(1, 2, 1, {0x9A, 0x00})));
}

TEST(ImageDecodePng, SixteenBitGrayIsClampedLikePillow) {
  // Pillow opens 16-bit gray as mode I;16 and clamps it to 255 when converting to L or RGB.
  PngSpec spec{6, 1, PNG_COLOR_TYPE_GRAY, 16, samples({0, 200, 255, 256, 1000, 65535})};
  EXPECT_TRUE(at::equal(decode_png_spec(spec, ColorMode::kGrayscale),
                        hwc(1, 6, 1, {0, 200, 255, 255, 255, 255})));
  spec.interlaced = true;
  EXPECT_TRUE(at::equal(decode_png_spec(spec),
                        hwc(1, 6, 1, {0, 200, 255, 255, 255, 255}).expand({1, 6, 3})));
}

// ---- Decoding JPEG: lossy, so constant colours at quality 100 and relations between files ----

JpegSpec constant_jpeg(int width, int height, std::vector<uint8_t> pixel, J_COLOR_SPACE in,
                       J_COLOR_SPACE stored) {
  JpegSpec spec;
  spec.width = width;
  spec.height = height;
  spec.components = static_cast<int>(pixel.size());
  spec.in_color_space = in;
  spec.jpeg_color_space = stored;
  for (int i = 0; i < width * height; ++i) {
    spec.samples.insert(spec.samples.end(), pixel.begin(), pixel.end());
  }
  return spec;
}

// Every pixel of `image` is within `tolerance` of `pixel`.
void expect_constant(const at::Tensor& image, const std::vector<int>& pixel, int tolerance) {
  ASSERT_EQ(image.size(2), static_cast<int64_t>(pixel.size()));
  const at::Tensor expected = hwc(1, 1, image.size(2), pixel).expand_as(image).to(at::kInt);
  EXPECT_LE((image.to(at::kInt) - expected).abs().max().item<int>(), tolerance)
      << "expected every pixel near " << c10::str(pixel);
}

TEST(ImageDecodeJpeg, GrayConstant) {
  const auto bytes = encode_jpeg(constant_jpeg(16, 16, {77}, JCS_GRAYSCALE, JCS_GRAYSCALE));
  const at::Tensor gray = decode_image_bytes(bytes, "gray.jpg", ColorMode::kGrayscale);
  EXPECT_EQ(gray.sizes(), (at::IntArrayRef{16, 16, 1}));
  expect_constant(gray, {77}, 0);
  expect_constant(decode_image_bytes(bytes, "gray.jpg", ColorMode::kRGB), {77, 77, 77}, 0);
}

TEST(ImageDecodeJpeg, RgbConstant) {
  const auto bytes = encode_jpeg(constant_jpeg(16, 8, {200, 100, 50}, JCS_RGB, JCS_YCbCr));
  const at::Tensor image = decode_image_bytes(bytes, "rgb.jpg", ColorMode::kRGB);
  EXPECT_EQ(image.sizes(), (at::IntArrayRef{8, 16, 3}));
  expect_constant(image, {200, 100, 50}, 1);  // YCbCr round trip: one step at most
  expect_constant(decode_image_bytes(bytes, "rgb.jpg", ColorMode::kGrayscale),
                  {pillow_luma(200, 100, 50)}, 1);
}

TEST(ImageDecodeJpeg, CmykIsConvertedAsPillowDoes) {
  // Files store CMYK inverted (Adobe's convention, and Pillow's: rawmode CMYK;I). Pillow's
  // cmyk2rgb: R = (255 - K) - round(C * (255 - K) / 255), by hand:
  //   ink (0, 255, 255, 0) -> (255, 0, 0); (0, 0, 0, 128) -> (127, 127, 127);
  //   (64, 0, 0, 0) -> (191, 255, 255); (100, 50, 0, 51) -> (124, 164, 204).
  const std::vector<std::pair<std::vector<uint8_t>, std::vector<int>>> cases = {
      {{0, 255, 255, 0}, {255, 0, 0}},
      {{0, 0, 0, 128}, {127, 127, 127}},
      {{64, 0, 0, 0}, {191, 255, 255}},
      {{100, 50, 0, 51}, {124, 164, 204}},
  };
  for (const J_COLOR_SPACE stored : {JCS_CMYK, JCS_YCCK}) {
    for (const auto& [ink, rgb] : cases) {
      std::vector<uint8_t> inverted;
      for (const uint8_t value : ink) {
        inverted.push_back(255 - value);
      }
      const auto bytes = encode_jpeg(constant_jpeg(16, 16, inverted, JCS_CMYK, stored));
      SCOPED_TRACE(stored == JCS_CMYK ? "CMYK" : "YCCK");
      expect_constant(decode_image_bytes(bytes, "cmyk.jpg", ColorMode::kRGB), rgb,
                      stored == JCS_CMYK ? 0 : 1);
    }
  }
}

JpegSpec gradient_jpeg(int width, int height) {
  JpegSpec spec;
  spec.width = width;
  spec.height = height;
  spec.quality = 90;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      spec.samples.insert(spec.samples.end(), {static_cast<uint8_t>(x * 255 / (width - 1)),
                                               static_cast<uint8_t>(y * 255 / (height - 1)),
                                               static_cast<uint8_t>((x * y) % 256)});
    }
  }
  return spec;
}

TEST(ImageDecodeJpeg, ProgressiveDecodesLikeBaseline) {
  // The same quantised coefficients, sent in one scan or in several.
  JpegSpec spec = gradient_jpeg(48, 40);
  const at::Tensor baseline = decode_image_bytes(encode_jpeg(spec), "b.jpg", ColorMode::kRGB);
  spec.progressive = true;
  const at::Tensor progressive = decode_image_bytes(encode_jpeg(spec), "p.jpg", ColorMode::kRGB);
  EXPECT_TRUE(at::equal(baseline, progressive));
}

TEST(ImageDecodeJpeg, SubsampledOddSizesKeepTheirShape) {
  JpegSpec spec = gradient_jpeg(17, 11);
  spec.subsample_chroma = true;
  const at::Tensor image = decode_image_bytes(encode_jpeg(spec), "odd.jpg", ColorMode::kRGB);
  EXPECT_EQ(image.sizes(), (at::IntArrayRef{11, 17, 3}));
  const at::Tensor source =
      tensor_of(std::vector<uint16_t>(spec.samples.begin(), spec.samples.end()), 11, 17, 3);
  // Lossy, but a smooth gradient at quality 90 stays close.
  EXPECT_LE((image.to(at::kInt) - source.to(at::kInt)).abs().to(at::kFloat).mean().item<float>(),
            4.0f);
}

// ---- Files and formats --------------------------------------------------------------------------

TEST(ImageDecodeFile, FormatComesFromTheBytesNotTheName) {
  TempDir dir;
  PngSpec spec{2, 1, PNG_COLOR_TYPE_RGB, 8, samples({1, 2, 3, 4, 5, 6})};
  const std::string path = dir.write("really_a_png.jpg", encode_png(spec));
  EXPECT_TRUE(at::equal(decode_image(path, ColorMode::kRGB), hwc(1, 2, 3, {1, 2, 3, 4, 5, 6})));
  const auto jpeg = encode_jpeg(constant_jpeg(8, 8, {90}, JCS_GRAYSCALE, JCS_GRAYSCALE));
  const std::string jpeg_path = dir.write("no_extension", jpeg);
  EXPECT_TRUE(at::equal(decode_image(jpeg_path, ColorMode::kGrayscale),
                        decode_image_bytes(jpeg, "x", ColorMode::kGrayscale)));
}

// ---- Bad input: an InputError naming the file and the cause, never a crash ---------------------

TEST(ImageErrors, MissingFileAndDirectory) {
  TempDir dir;
  const std::string missing = dir.file("missing.png");
  EXPECT_TRUE(contains_all(message_of<InputError>([&] { decode_image(missing, ColorMode::kRGB); }),
                           {"'" + missing + "'", "no such file"}));
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image(dir.path().string(), ColorMode::kRGB); }),
      {"is a directory"}));
}

TEST(ImageErrors, AFifoIsRefusedWithoutBlocking) {
  TempDir dir;
  const std::string fifo = dir.file("pipe.png");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // Opening it would wait for a writer forever: the error must come from the check before.
  EXPECT_TRUE(contains_all(message_of<InputError>([&] { decode_image(fifo, ColorMode::kRGB); }),
                           {"'" + fifo + "'", "not a regular file"}));
}

TEST(ImageErrors, EmptyFile) {
  TempDir dir;
  const std::string path = dir.write("empty.jpg", std::vector<uint8_t>{});
  EXPECT_TRUE(contains_all(message_of<InputError>([&] { decode_image(path, ColorMode::kRGB); }),
                           {"'" + path + "'", "empty"}));
}

TEST(ImageErrors, NotAnImage) {
  TempDir dir;
  const std::string text = dir.write("x.txt", std::string("hello, this is text\n"));
  EXPECT_TRUE(contains_all(message_of<InputError>([&] { decode_image(text, ColorMode::kRGB); }),
                           {"'" + text + "' is not a JPEG or PNG image"}));
  const std::string tiny = dir.write("one_byte.png", std::string("\x89"));
  EXPECT_TRUE(contains_all(message_of<InputError>([&] { decode_image(tiny, ColorMode::kRGB); }),
                           {"is not a JPEG or PNG image"}));
  const std::string gif = dir.write("x.gif", std::string("GIF89a\x01\x00\x01\x00", 10));
  EXPECT_TRUE(contains_all(message_of<InputError>([&] { decode_image(gif, ColorMode::kRGB); }),
                           {"'" + gif + "' is a GIF image", "unsupported"}));
}

TEST(ImageErrors, TruncatedJpeg) {
  auto bytes = encode_jpeg(gradient_jpeg(64, 64));
  bytes.resize(bytes.size() / 2);
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image_bytes(bytes, "cut.jpg", ColorMode::kRGB); }),
      {"'cut.jpg'", "Premature end of JPEG file", "truncated"}));
  bytes.resize(200);  // inside the headers
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image_bytes(bytes, "cut.jpg", ColorMode::kRGB); }),
      {"'cut.jpg'"}));
}

TEST(ImageErrors, TruncatedProgressiveJpeg) {
  JpegSpec spec = gradient_jpeg(64, 64);
  spec.progressive = true;
  auto bytes = encode_jpeg(spec);
  bytes.resize(bytes.size() * 2 / 3);
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image_bytes(bytes, "cut.jpg", ColorMode::kRGB); }),
      {"Premature end of JPEG file"}));
}

TEST(ImageErrors, CorruptJpegData) {
  auto bytes = encode_jpeg(gradient_jpeg(64, 64));
  size_t scan = 0;  // the SOS marker
  while (!(bytes[scan] == 0xFF && bytes[scan + 1] == 0xDA)) {
    ++scan;
  }
  ASSERT_GT(bytes.size(), scan + 400);
  bytes[scan + 300] = 0xFF;  // a restart marker where entropy-coded data should be
  bytes[scan + 301] = 0xD3;
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image_bytes(bytes, "bad.jpg", ColorMode::kRGB); }),
      {"'bad.jpg'", "Corrupt JPEG data"}));
  const std::vector<uint8_t> header_only = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02, 0x12, 0x34};
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image_bytes(header_only, "bad.jpg", ColorMode::kRGB); }),
      {"cannot decode JPEG 'bad.jpg'"}));
}

TEST(ImageErrors, UnsupportedJpegComponents) {
  JpegSpec spec;
  spec.width = spec.height = 8;
  spec.components = 2;
  spec.in_color_space = spec.jpeg_color_space = JCS_UNKNOWN;
  spec.samples.assign(8 * 8 * 2, 100);
  const auto bytes = encode_jpeg(spec);
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image_bytes(bytes, "two.jpg", ColorMode::kRGB); }),
      {"'two.jpg'", "2 colour components", "unsupported"}));
}

// PNG chunks: the big-endian length at `offset`; the offset of the first IDAT's data.
uint32_t chunk_length(const std::vector<uint8_t>& png, size_t offset) {
  return (uint32_t{png[offset]} << 24) | (uint32_t{png[offset + 1]} << 16) |
         (uint32_t{png[offset + 2]} << 8) | png[offset + 3];
}

size_t idat_data(const std::vector<uint8_t>& png) {
  for (size_t i = 8; i + 8 < png.size(); i += 12 + chunk_length(png, i)) {
    if (std::string(png.begin() + i + 4, png.begin() + i + 8) == "IDAT") {
      return i + 8;
    }
  }
  return 0;
}

// Recomputes the CRC-32 of the chunk at `offset` (type and data), after editing it.
void fix_chunk_crc(std::vector<uint8_t>& png, size_t offset) {
  const uint32_t length = chunk_length(png, offset);
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = offset + 4; i < offset + 8 + length; ++i) {
    crc ^= png[i];
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
  }
  crc ^= 0xFFFFFFFFu;
  for (int i = 0; i < 4; ++i) {
    png[offset + 8 + length + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
  }
}

TEST(ImageErrors, TruncatedPng) {
  PngSpec spec{40, 40, PNG_COLOR_TYPE_RGB, 8, pattern(40 * 40 * 3)};
  auto bytes = encode_png(spec);
  bytes.resize(bytes.size() / 2);
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image_bytes(bytes, "cut.png", ColorMode::kRGB); }),
      {"cannot decode PNG 'cut.png'", "truncated"}));
  bytes.resize(20);  // inside IHDR
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image_bytes(bytes, "cut.png", ColorMode::kRGB); }),
      {"truncated"}));
}

TEST(ImageErrors, CorruptPng) {
  PngSpec spec{40, 40, PNG_COLOR_TYPE_RGB, 8, pattern(40 * 40 * 3)};
  const auto original = encode_png(spec);
  const size_t data = idat_data(original);
  ASSERT_GT(data, 0u);
  auto bytes = original;
  bytes[data + 10] ^= 0x55;  // zlib meets the damage before the chunk's CRC is checked
  std::string message =
      message_of<InputError>([&] { decode_image_bytes(bytes, "bad.png", ColorMode::kRGB); });
  EXPECT_TRUE(contains_all(message, {"cannot decode PNG 'bad.png': IDAT: "}));
  bytes = original;
  bytes[data + chunk_length(original, data - 8)] ^= 0x01;  // the IDAT chunk's CRC itself
  message = message_of<InputError>([&] { decode_image_bytes(bytes, "bad.png", ColorMode::kRGB); });
  EXPECT_TRUE(contains_all(message, {"cannot decode PNG 'bad.png': IDAT: CRC error"}));
}

TEST(ImageErrors, MangledFilesNeverCrash) {
  // Truncations and flipped bytes everywhere: each decodes or throws InputError, nothing else.
  PngSpec png{24, 16, PNG_COLOR_TYPE_RGB_ALPHA, 8, pattern(24 * 16 * 4)};
  JpegSpec progressive = gradient_jpeg(24, 16);
  progressive.progressive = true;
  const std::vector<std::vector<uint8_t>> originals = {
      encode_png(png), encode_jpeg(gradient_jpeg(24, 16)), encode_jpeg(progressive)};
  int cuts_decoded = 0, flips_refused = 0, flips = 0;
  for (const auto& original : originals) {
    // Where the image data ends: PNG's IEND chunk, JPEG's EOI marker. A cut after it leaves
    // every pixel there (Pillow, too, decodes such a file).
    const bool png = original[0] == 0x89;
    const std::string iend = "IEND";
    const size_t trailer =
        png ? std::search(original.begin(), original.end(), iend.begin(), iend.end()) -
                  original.begin() - 4
            : original.size() - 2;
    for (size_t i = 0; i < original.size(); i += 7) {
      std::vector<uint8_t> cut(original.begin(), original.begin() + i);
      std::vector<uint8_t> flipped = original;
      flipped[i] ^= 0xA5;
      try {
        decode_image_bytes(cut, "mangled", ColorMode::kRGB);
        if (i < trailer) {
          ++cuts_decoded;
          ADD_FAILURE() << "decoded when cut at " << i << " of " << original.size() << " bytes";
        }
      } catch (const InputError&) {
      }
      ++flips;
      try {
        // A flipped byte in the pixels may decode: to an image of the file's own shape.
        const auto image = decode_image_bytes(flipped, "mangled", ColorMode::kRGB);
        EXPECT_EQ(image.sizes(), (std::vector<int64_t>{16, 24, 3})) << "flipped at " << i;
      } catch (const InputError&) {
        ++flips_refused;
      }
    }
  }
  EXPECT_EQ(cuts_decoded, 0);  // a file cut short of its pixels is never taken for an image
  EXPECT_GT(flips_refused, 0);
  EXPECT_LT(flips_refused, flips);  // damage in the compressed pixels alone decodes
}

// ---- Decompression bombs
// -------------------------------------------------------------------------

TEST(ImageLimits, PixelLimitIsInclusive) {
  PngSpec spec{100, 100, PNG_COLOR_TYPE_GRAY, 8, pattern(100 * 100)};
  const auto png = encode_png(spec);
  const auto jpeg = encode_jpeg(constant_jpeg(100, 100, {50}, JCS_GRAYSCALE, JCS_GRAYSCALE));
  for (const auto* bytes : {&png, &jpeg}) {
    EXPECT_NO_THROW(decode_image_bytes(*bytes, "ok", ColorMode::kRGB, DecodeLimits{10000}));
    EXPECT_TRUE(contains_all(message_of<InputError>([&] {
                               decode_image_bytes(*bytes, "big", ColorMode::kRGB,
                                                  DecodeLimits{9999});
                             }),
                             {"'big' has 10000 pixels (100x100)", "more than the limit of 9999"}));
  }
}

TEST(ImageLimits, BombsAreRefusedFromTheirHeaders) {
  // 100000 x 100000 claimed by a tiny file: refused from the header, before any allocation
  // (30 GB, had it been allocated).
  PngSpec spec{1, 1, PNG_COLOR_TYPE_RGB, 8, samples({1, 2, 3})};
  auto png = encode_png(spec);
  for (const size_t offset : {16u, 20u}) {  // IHDR width and height, big-endian
    png[offset] = 0x00;
    png[offset + 1] = 0x01;
    png[offset + 2] = 0x86;
    png[offset + 3] = 0xA0;
  }
  fix_chunk_crc(png, 8);  // IHDR
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image_bytes(png, "bomb.png", ColorMode::kRGB); }),
      {"'bomb.png' has 10000000000 pixels (100000x100000)", "limit of 178956970"}));
  // The same with a JPEG whose SOF0 claims 65000 x 65000.
  auto jpeg = encode_jpeg(constant_jpeg(8, 8, {50}, JCS_GRAYSCALE, JCS_GRAYSCALE));
  size_t sof = 0;
  while (!(jpeg[sof] == 0xFF && jpeg[sof + 1] == 0xC0)) {
    ++sof;
  }
  for (const size_t offset : {sof + 5, sof + 7}) {  // height, then width
    jpeg[offset] = 0xFD;
    jpeg[offset + 1] = 0xE8;
  }
  EXPECT_TRUE(contains_all(
      message_of<InputError>([&] { decode_image_bytes(jpeg, "bomb.jpg", ColorMode::kRGB); }),
      {"'bomb.jpg' has 4225000000 pixels (65000x65000)"}));
}

TEST(ImageLimits, ProgressiveScanLimit) {
  JpegSpec spec = gradient_jpeg(32, 32);
  spec.progressive = true;  // libjpeg's simple progression: 10 scans for YCbCr
  const auto bytes = encode_jpeg(spec);
  DecodeLimits limits;
  limits.max_jpeg_scans = 10;
  EXPECT_NO_THROW(decode_image_bytes(bytes, "ok.jpg", ColorMode::kRGB, limits));
  limits.max_jpeg_scans = 3;
  EXPECT_TRUE(contains_all(message_of<InputError>([&] {
                             decode_image_bytes(bytes, "scans.jpg", ColorMode::kRGB, limits);
                           }),
                           {"'scans.jpg'", "more than 3 scans"}));
}

TEST(ImageLimits, ResizedSizeIsLimitedToo) {
  // A 1 x 5000 strip resized to 256 on its short side would be 256 x 1280000.
  const at::Tensor strip = at::zeros({1, 5000, 3}, at::kByte);
  EXPECT_TRUE(contains_all(message_of<InputError>([&] { preprocess(strip, Preprocess{}); }),
                           {"1280000x256", "more pixels than the limit"}));
}

// ---- Preprocessing
// -------------------------------------------------------------------------------

Preprocess no_normalisation(int64_t resize, int64_t crop) {
  Preprocess spec;
  spec.resize = resize;
  spec.crop = crop;
  spec.mean.clear();
  spec.std.clear();
  return spec;
}

TEST(ImagePreprocess, DefaultsAreTheImagenetEvalTransform) {
  const Preprocess spec;
  EXPECT_EQ(spec.resize, 256);
  EXPECT_EQ(spec.crop, 224);
  EXPECT_EQ(spec.mean, (std::vector<double>{0.485, 0.456, 0.406}));
  EXPECT_EQ(spec.std, (std::vector<double>{0.229, 0.224, 0.225}));
  EXPECT_EQ(spec.color, ColorMode::kRGB);
}

TEST(ImagePreprocess, ConstantImageGivesTheNormalisedConstant) {
  const std::vector<int> pixel = {10, 120, 250};
  const at::Tensor image = hwc(1, 1, 3, pixel).expand({300, 400, 3}).contiguous();
  const Preprocess spec;
  for (const int64_t resize : {int64_t{256}, int64_t{0}}) {
    Preprocess resized = spec;
    resized.resize = resize;
    const at::Tensor out = preprocess(image, resized);
    EXPECT_EQ(out.sizes(), (at::IntArrayRef{3, 224, 224}));
    EXPECT_EQ(out.scalar_type(), at::kFloat);
    EXPECT_TRUE(out.is_contiguous());
    EXPECT_FALSE(out.requires_grad());
    for (int c = 0; c < 3; ++c) {
      // torchvision: img.float().div(255), then sub_(mean).div_(std), all in float32.
      const float expected =
          (static_cast<float>(pixel[c]) / 255.0f - static_cast<float>(spec.mean[c])) /
          static_cast<float>(spec.std[c]);
      EXPECT_EQ(out[c].min().item<float>(), expected) << "channel " << c << " resize " << resize;
      EXPECT_EQ(out[c].max().item<float>(), expected) << "channel " << c << " resize " << resize;
    }
  }
}

TEST(ImagePreprocess, ResizeFollowsTorchvisionsSizeRule) {
  // The shorter side becomes `resize`, the longer int(resize * long / short), truncated.
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> cases = {
      {{300, 400}, {256, 341}},                            // 341.33
      {{400, 300}, {341, 256}}, {{3, 7}, {2, 4}},          // resize 2: 4.67
      {{50, 50}, {256, 256}},   {{256, 300}, {256, 300}},  // already the size: not resampled
  };
  for (const auto& [in, out] : cases) {
    const int64_t resize = in[0] == 3 ? 2 : 256;
    const at::Tensor image = at::zeros({in[0], in[1], 3}, at::kByte);
    EXPECT_EQ(preprocess(image, no_normalisation(resize, 0)).sizes(),
              (at::IntArrayRef{3, out[0], out[1]}))
        << in[0] << "x" << in[1];
  }
}

TEST(ImagePreprocess, NoResamplingWhenTheSizeAlreadyMatches) {
  const at::Tensor image = tensor_of(pattern(256 * 300 * 3), 256, 300, 3);
  const at::Tensor out = preprocess(image, no_normalisation(256, 0));
  EXPECT_TRUE(at::equal(out, image.permute({2, 0, 1}).to(at::kFloat).div(255)));
}

TEST(ImagePreprocess, DownscalingUsesPillowsAntialiasedWeights) {
  // Rows 0 100 200 255 halved (Pillow's bilinear, support 2 at scale 2), by hand:
  // output 0: centre 1.0, weights 3/7 3/7 1/7 on inputs 0 1 2 -> 500/7 = 71.43;
  // output 1: centre 3.0, weights 1/7 3/7 3/7 on inputs 1 2 3 -> 1465/7 = 209.29.
  // Pillow rounds to 71 and 209; every column is constant, so the vertical pass keeps them.
  const at::Tensor image = hwc(1, 4, 1, {0, 100, 200, 255}).expand({4, 4, 1}).contiguous();
  Preprocess spec = no_normalisation(2, 0);
  spec.color = ColorMode::kGrayscale;
  const at::Tensor out = preprocess(image, spec).mul(255);
  ASSERT_EQ(out.sizes(), (at::IntArrayRef{1, 2, 2}));
  for (int y = 0; y < 2; ++y) {
    EXPECT_NEAR(out[0][y][0].item<float>(), 500.0 / 7, 0.5 + 1e-4);
    EXPECT_NEAR(out[0][y][1].item<float>(), 1465.0 / 7, 0.5 + 1e-4);
  }
}

TEST(ImagePreprocess, UpscalingUsesPillowsBilinearWeights) {
  // Columns 0 255 doubled: centres 0.25 0.75 1.25 1.75 -> 0, 63.75, 191.25, 255 by hand
  // (the window at the edges holds one pixel only); Pillow gives 0 64 191 255.
  const at::Tensor image = hwc(1, 2, 1, {0, 255}).expand({2, 2, 1}).contiguous();
  Preprocess spec = no_normalisation(4, 0);
  spec.color = ColorMode::kGrayscale;
  const at::Tensor out = preprocess(image, spec).mul(255);
  ASSERT_EQ(out.sizes(), (at::IntArrayRef{1, 4, 4}));
  const double expected[] = {0, 63.75, 191.25, 255};
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) {
      EXPECT_NEAR(out[0][y][x].item<float>(), expected[x], 0.5 + 1e-4) << y << "," << x;
    }
  }
}

TEST(ImagePreprocess, CentreCropOffsetsRoundHalvesToEven) {
  // A 7 x 9 gradient whose value is 16 * row + column. torchvision's offsets are
  // int(round((size - crop) / 2.0)) with Python's round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
  std::vector<int> values;
  for (int y = 0; y < 7; ++y) {
    for (int x = 0; x < 9; ++x) {
      values.push_back(16 * y + x);
    }
  }
  const at::Tensor image = hwc(7, 9, 1, values);
  struct Case {
    int64_t crop, top, left;
  };
  for (const Case& c :
       {Case{4, 2, 2}, Case{5, 1, 2}, Case{6, 0, 2}, Case{7, 0, 1}, Case{3, 2, 3}}) {
    Preprocess spec = no_normalisation(0, c.crop);
    spec.color = ColorMode::kGrayscale;
    const at::Tensor out = preprocess(image, spec).mul(255).round().to(at::kInt);
    ASSERT_EQ(out.sizes(), (at::IntArrayRef{1, c.crop, c.crop}));
    EXPECT_EQ(out[0][0][0].item<int>(), 16 * c.top + c.left) << "crop " << c.crop;
    EXPECT_EQ(out[0][c.crop - 1][c.crop - 1].item<int>(),
              16 * (c.top + c.crop - 1) + c.left + c.crop - 1)
        << "crop " << c.crop;
  }
}

TEST(ImagePreprocess, ColourModeOfTheSpecDecidesTheChannels) {
  const at::Tensor rgb = hwc(1, 2, 3, {255, 0, 0, 12, 34, 56}).expand({2, 2, 3}).contiguous();
  Preprocess gray = no_normalisation(0, 0);
  gray.color = ColorMode::kGrayscale;
  gray.mean = {0.5};
  gray.std = {0.25};
  const at::Tensor out = preprocess(rgb.narrow(0, 0, 1), gray);
  ASSERT_EQ(out.sizes(), (at::IntArrayRef{1, 1, 2}));
  EXPECT_EQ(out[0][0][0].item<float>(), (76 / 255.0f - 0.5f) / 0.25f);
  EXPECT_EQ(out[0][0][1].item<float>(), (30 / 255.0f - 0.5f) / 0.25f);
  // A one-channel image with an RGB spec is replicated; one mean and std serve all channels.
  Preprocess replicate = no_normalisation(0, 0);
  replicate.mean = {0.5};
  replicate.std = {0.5};
  const at::Tensor three = preprocess(hwc(1, 1, 1, {51}), replicate);
  EXPECT_EQ(three.sizes(), (at::IntArrayRef{3, 1, 1}));
  EXPECT_TRUE(at::equal(three, at::full({3, 1, 1}, (51 / 255.0f - 0.5f) / 0.5f)));
}

TEST(ImagePreprocess, BadSpecsAreOptionErrors) {
  const at::Tensor image = at::zeros({300, 400, 3}, at::kByte);
  auto message = [&](auto change) {
    Preprocess spec;
    change(spec);
    return message_of<OptionError>([&] { preprocess(image, spec); });
  };
  EXPECT_TRUE(contains_all(message([](Preprocess& s) { s.resize = -1; }), {"resize must be"}));
  EXPECT_TRUE(contains_all(message([](Preprocess& s) { s.crop = -5; }), {"crop must be"}));
  EXPECT_TRUE(contains_all(message([](Preprocess& s) { s.crop = 300; }),
                           {"crop 300 is larger than resize 256"}));
  EXPECT_TRUE(contains_all(message([](Preprocess& s) { s.std.pop_back(); }),
                           {"same number of values, got 3 and 2"}));
  EXPECT_TRUE(contains_all(message([](Preprocess& s) {
                             s.mean = {0.1, 0.2};
                             s.std = {1, 1};
                           }),
                           {"RGB images have 3 channels"}));
  EXPECT_TRUE(contains_all(message([](Preprocess& s) { s.color = ColorMode::kGrayscale; }),
                           {"grayscale images have 1 channel"}));
  EXPECT_TRUE(contains_all(message([](Preprocess& s) { s.std[1] = 0; }), {"non-zero"}));
  EXPECT_TRUE(contains_all(message([](Preprocess& s) { s.std[2] = std::nan(""); }), {"non-zero"}));
  EXPECT_TRUE(contains_all(message([](Preprocess& s) { s.mean[0] = INFINITY; }), {"finite"}));
  EXPECT_TRUE(contains_all(message([](Preprocess& s) {
                             s.resize = 0;
                             s.crop = 350;
                           }),
                           {"350x350 centre crop does not fit in the image (400x300"}));
}

TEST(ImagePreprocess, BadTensorsAreInputErrors) {
  for (const at::Tensor& bad : {at::zeros({4, 4, 3}, at::kFloat), at::zeros({4, 4}, at::kByte),
                                at::zeros({4, 4, 4}, at::kByte), at::zeros({0, 4, 3}, at::kByte)}) {
    EXPECT_THROW(preprocess(bad, Preprocess{}), InputError) << bad.sizes();
  }
  EXPECT_TRUE(
      contains_all(message_of<InputError>([] { preprocess(at::zeros({4, 4, 4}, at::kByte), {}); }),
                   {"uint8 [height, width, channels] image with 1 or 3 channels"}));
}

// ---- load_image
// ------------------------------------------------------------------------------------

TEST(ImageLoad, IsDecodeThenPreprocess) {
  TempDir dir;
  PngSpec spec{300, 200, PNG_COLOR_TYPE_RGB, 8, pattern(300 * 200 * 3)};
  const std::string path = dir.write("photo.png", encode_png(spec));
  const Preprocess imagenet;
  const at::Tensor loaded = load_image(path, imagenet);
  EXPECT_EQ(loaded.sizes(), (at::IntArrayRef{3, 224, 224}));
  EXPECT_TRUE(at::equal(loaded, preprocess(decode_image(path, ColorMode::kRGB), imagenet)));
  Preprocess gray;
  gray.color = ColorMode::kGrayscale;
  gray.mean = {0.45};
  gray.std = {0.22};
  EXPECT_TRUE(at::equal(load_image(path, gray),
                        preprocess(decode_image(path, ColorMode::kGrayscale), gray)));
}

TEST(ImageLoad, SpecIsCheckedBeforeTheFileAndErrorsNameTheFile) {
  TempDir dir;
  Preprocess bad;
  bad.crop = 1000;
  EXPECT_THROW(load_image(dir.file("missing.png"), bad), OptionError);
  EXPECT_THROW(load_image(dir.file("missing.png"), Preprocess{}), InputError);
  PngSpec spec{30, 20, PNG_COLOR_TYPE_GRAY, 8, pattern(30 * 20)};
  const std::string path = dir.write("small.png", encode_png(spec));
  Preprocess keep_size;
  keep_size.resize = 0;
  EXPECT_TRUE(contains_all(message_of<OptionError>([&] { load_image(path, keep_size); }),
                           {"'" + path + "'", "does not fit"}));
}

}  // namespace
}  // namespace tsnative
