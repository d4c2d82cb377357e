"""Parity of tsnative's C++ image pipeline with Pillow, on real photos.

Decoding is compared with ``Image.open(p).convert("RGB")`` / ``convert("L")``; preprocessing
with torchvision's standard ImageNet eval transform applied to a PIL image, written out here
with Pillow and numpy (no torchvision): Resize(256) with Image.BILINEAR (which Pillow
antialiases) and torchvision's size rule, CenterCrop(224) with torchvision's offsets,
ToTensor (/255) and Normalize, all in float32.

The photos are scikit-image's sample data, written to JPEG and PNG in the variants the decoder
has to handle (qualities, chroma subsampling, progressive, CMYK, grayscale; RGB, RGBA, palette,
gray + alpha, 1/2/4/16-bit, interlaced, tRNS) and cropped to several sizes and aspect ratios.

Tolerances live in one place (the constants and ``assert_close_to_pillow`` below):
- PNG decoding is lossless: equal to Pillow, sample for sample.
- JPEG decoding: tsnative's libjpeg-turbo (the system's 2.1 here) and the one bundled with
  Pillow (3.x) use the same integer IDCT, upsampling and colour conversion, and CMYK follows
  Pillow's formula: equal too, measured on every file below.
- Preprocessing: Pillow resamples 8-bit images in fixed point, rounding to 8 bits after the
  horizontal pass and after the vertical one. tsnative resamples with ATen's antialiased
  bilinear kernel for uint8 (the same filter and weights, in fixed point, rounded to uint8):
  almost every sample is Pillow's, and none is more than one 8-bit step off, 1/255 before
  normalisation and (1/255) / std after it. (A float32 resampling, unrounded, would be off by
  up to 1.002 steps: Pillow's two roundings plus float32 coordinates.)
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

Image = pytest.importorskip(
    "PIL.Image", reason="Pillow is the reference decoder (pip install pillow)"
)
skimage_data = pytest.importorskip(
    "skimage.data", reason="the test photos are scikit-image's (pip install scikit-image)"
)

import tsnative  # noqa: E402
from helpers import needs_torchvision, torchvision  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Before normalisation: at most one 8-bit step (see the module docstring), plus float32 error.
PREPROCESS_ATOL = 1 / 255 + 1e-6


def assert_close_to_pillow(
    actual: torch.Tensor,
    expected: np.ndarray,
    atol: float,
    what: str,
    request: pytest.FixtureRequest | None = None,
) -> float:
    """Asserts same shape and dtype and max |actual - expected| <= atol; returns the max and
    reports it (printed, shown by pytest -rP, and a property in --junitxml reports)."""
    expected_tensor = torch.from_numpy(np.array(expected, copy=True, order="C"))
    assert actual.dtype == expected_tensor.dtype, what
    assert tuple(actual.shape) == tuple(expected_tensor.shape), what
    if atol == 0:
        mismatched = int((actual != expected_tensor).sum())
        assert mismatched == 0, f"{what}: {mismatched} samples differ from Pillow's"
        return 0.0
    max_diff = float((actual.double() - expected_tensor.double()).abs().max())
    print(f"{what}: max |diff| = {max_diff:.6g} = {max_diff * 255:.4f} / 255")
    if request is not None:
        request.node.user_properties.append(("max_abs_diff", max_diff))
    assert max_diff <= atol, (
        f"{what}: max |diff| {max_diff:.6g} > {atol:.6g} (x255: {max_diff * 255:.3f})"
    )
    return max_diff


# ---- The Pillow reference -----------------------------------------------------------------


def pillow_open(path: Path, color: str = "rgb"):
    """Image.open(p).convert("RGB" or "L"). Transparency is dropped, as tsnative drops it
    (Pillow warns about doing so for palette images with several transparent entries)."""
    with Image.open(path) as image, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
        return image.convert("RGB" if color == "rgb" else "L")


def pillow_decode(path: Path, color: str = "rgb") -> np.ndarray:
    """Image.open(p).convert("RGB" or "L") as a uint8 HWC array."""
    array = np.array(pillow_open(path, color))
    return array[..., None] if array.ndim == 2 else array


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's Resize(size) rule: the shorter side becomes size, the longer one
    int(size * long / short)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def pillow_preprocess(
    path: Path,
    resize: int = 256,
    crop: int = 224,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    color: str = "rgb",
) -> np.ndarray:
    """torchvision's Resize / CenterCrop / ToTensor / Normalize on a PIL image: float32 CHW."""
    image = pillow_open(path, color)
    if resize:
        height, width = resized_size(image.height, image.width, resize)
        if (height, width) != (image.height, image.width):
            image = image.resize((width, height), Image.BILINEAR)
    array = np.array(image)
    array = array[..., None] if array.ndim == 2 else array
    if crop:
        height, width = array.shape[:2]
        # torchvision's int(round((size - crop) / 2.0)): Python rounds halves to even.
        top = round((height - crop) / 2.0)
        left = round((width - crop) / 2.0)
        array = array[top : top + crop, left : left + crop]
    chw = array.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    if mean:
        chw = (chw - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[
            :, None, None
        ]
    return np.ascontiguousarray(chw, dtype=np.float32)


# ---- Test images --------------------------------------------------------------------------

ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def _pack_row(samples: np.ndarray, bit_depth: int) -> bytes:
    if bit_depth == 16:
        return samples.astype(">u2").tobytes()
    if bit_depth == 8:
        return samples.astype(np.uint8).tobytes()
    per_byte = 8 // bit_depth
    padded = np.concatenate([samples, np.zeros((-len(samples)) % per_byte, samples.dtype)])
    groups = padded.astype(np.uint16).reshape(-1, per_byte)
    shifts = np.arange(per_byte - 1, -1, -1, dtype=np.uint16) * bit_depth
    return (groups << shifts).sum(axis=1).astype(np.uint8).tobytes()


def write_png(
    path: Path,
    array: np.ndarray,
    color_type: int,
    bit_depth: int,
    *,
    palette: np.ndarray | None = None,
    trns: bytes | None = None,
    interlace: bool = False,
) -> None:
    """A PNG written by hand (Pillow writes neither 16-bit colour, 2-bit gray nor interlaced
    files): filter 0 on every row, zlib-compressed."""
    height, width = array.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    def scanlines(image: np.ndarray) -> bytes:
        return b"".join(b"\x00" + _pack_row(row.reshape(-1), bit_depth) for row in image)

    if interlace:
        passes = (array[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7)
        raw = b"".join(scanlines(sub) for sub in passes if sub.shape[0] and sub.shape[1])
    else:
        raw = scanlines(array)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    if palette is not None:
        data += chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    if trns is not None:
        data += chunk(b"tRNS", trns)
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(data)


def _photos() -> dict[str, np.ndarray]:
    return {
        "astronaut": skimage_data.astronaut(),  # 512x512 RGB
        "chelsea": skimage_data.chelsea(),  # 300x451 RGB
        "coffee": skimage_data.coffee(),  # 400x600 RGB
        "rocket": skimage_data.rocket(),  # 427x640 RGB
        "camera": skimage_data.camera(),  # 512x512 gray
        "logo": skimage_data.logo(),  # 500x500 RGBA
    }


def _alpha_ramp(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    alpha = (np.arange(width)[None, :] * 255 // max(width - 1, 1)).repeat(height, 0)
    return np.dstack([rgb, alpha.astype(np.uint8)])


def _wide16(array: np.ndarray) -> np.ndarray:
    """uint8 -> uint16 with the 8-bit value in the high byte and noise in the low byte."""
    noise = np.random.default_rng(0).integers(0, 256, array.shape)
    return (array.astype(np.uint16) << 8) | noise.astype(np.uint16)


Writer = Callable[[dict[str, np.ndarray], Path], None]


def _save(source: str, mode: str | None = None, crop=None, **options) -> Writer:
    def write(photos: dict[str, np.ndarray], path: Path) -> None:
        array = photos[source] if crop is None else photos[source][crop]
        image = Image.fromarray(np.ascontiguousarray(array))
        if mode is not None:
            image = image.convert(mode)
        image.save(path, **options)

    return write


def _palette(bits: int, colors: int) -> Writer:
    def write(photos: dict[str, np.ndarray], path: Path) -> None:
        image = Image.fromarray(photos["coffee"]).quantize(colors)
        image.save(path, bits=bits)

    return write


TALL = (slice(None), slice(100, 220))  # 300x120 of chelsea
WIDE = (slice(150, 250), slice(None))  # 100x600 of coffee
TINY = (slice(200, 237), slice(200, 223))  # 37x23: smaller than the crop, upscaled
ODD = (slice(0, 301), slice(0, 333))  # odd sizes: partial MCUs, halves in the crop offsets
THIN = (slice(100, 103), slice(0, 50))  # 3x50: an extreme aspect ratio

IMAGES: dict[str, Writer] = {
    # JPEG, written by Pillow (libjpeg-turbo): 4:2:0 unless said otherwise.
    "astronaut_q75.jpg": _save("astronaut", quality=75),
    "chelsea_q95.jpg": _save("chelsea", quality=95),
    "coffee_q50.jpg": _save("coffee", quality=50),
    "rocket_444_q90.jpg": _save("rocket", quality=90, subsampling=0),
    "rocket_422_q85.jpg": _save("rocket", quality=85, subsampling=1),
    "chelsea_optimized.jpg": _save("chelsea", quality=80, optimize=True),
    "astronaut_progressive.jpg": _save("astronaut", quality=85, progressive=True),
    "coffee_cmyk.jpg": _save("coffee", mode="CMYK", quality=90),
    "camera_gray.jpg": _save("camera", quality=90),
    "chelsea_tall.jpg": _save("chelsea", crop=TALL, quality=90),
    "coffee_wide.jpg": _save("coffee", crop=WIDE, quality=90),
    "astronaut_tiny.jpg": _save("astronaut", crop=TINY, quality=90),
    "rocket_odd.jpg": _save("rocket", crop=ODD, quality=90),
    "rocket_thin.jpg": _save("rocket", crop=THIN, quality=90),
    # PNG, written by Pillow.
    "astronaut.png": _save("astronaut"),
    "logo_rgba.png": _save("logo"),
    "camera.png": _save("camera"),
    "camera_la.png": _save("camera", mode="LA"),
    "camera_1bit.png": _save("camera", mode="1"),
    "chelsea_palette.png": _save("chelsea", mode="P"),
    "coffee_palette_4bit.png": _palette(bits=4, colors=16),
    "coffee_palette_2bit.png": _palette(bits=2, colors=4),
    "chelsea_tall.png": _save("chelsea", crop=TALL),
    "coffee_wide.png": _save("coffee", crop=WIDE),
    "astronaut_tiny.png": _save("astronaut", crop=TINY),
    "rocket_odd.png": _save("rocket", crop=ODD),
    # PNG, written by hand.
    "astronaut_rgba.png": lambda p, path: write_png(path, _alpha_ramp(p["astronaut"]), 6, 8),
    "chelsea_trns.png": lambda p, path: write_png(path, p["chelsea"], 2, 8, trns=b"\0\0\0\0\0\0"),
    "camera_2bit.png": lambda p, path: write_png(path, p["camera"] >> 6, 0, 2),
    "camera_4bit_interlaced.png": lambda p, path: write_png(
        path, p["camera"] >> 4, 0, 4, interlace=True
    ),
    "rocket_interlaced.png": lambda p, path: write_png(path, p["rocket"], 2, 8, interlace=True),
    "palette_2bit_trns.png": lambda p, path: write_png(
        path,
        p["camera"] >> 6,
        3,
        2,
        palette=np.array([[10, 20, 30], [200, 40, 60], [70, 250, 90], [255, 255, 128]]),
        trns=b"\x00\x80",
    ),
    # 16-bit: Pillow keeps the high byte of RGB, RGBA and gray + alpha, and clamps 16-bit gray
    # (mode I;16) to 255 when it converts.
    "astronaut_16bit.png": lambda p, path: write_png(path, _wide16(p["astronaut"]), 2, 16),
    "logo_16bit.png": lambda p, path: write_png(path, _wide16(p["logo"]), 6, 16),
    "camera_la_16bit.png": lambda p, path: write_png(
        path, _wide16(np.dstack([p["camera"], p["camera"][::-1]])), 4, 16
    ),
    "camera_16bit.png": lambda p, path: write_png(path, p["camera"].astype(np.uint16) * 257, 0, 16),
    "camera_16bit_low.png": lambda p, path: write_png(
        path, p["camera"].astype(np.uint16) * 2, 0, 16
    ),
    "camera_16bit_interlaced.png": lambda p, path: write_png(
        path, p["camera"].astype(np.uint16) + 100, 0, 16, interlace=True
    ),
    "camera_i16.png": lambda p, path: Image.fromarray(p["camera"].astype(np.uint16) * 3).save(path),
}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("images")
    photos = _photos()
    for name, write in IMAGES.items():
        write(photos, directory / name)
    return directory


JPEGS = [name for name in IMAGES if name.endswith(".jpg")]
PNGS = [name for name in IMAGES if name.endswith(".png")]


# ---- Decoding -----------------------------------------------------------------------------


def test_the_test_images_are_what_their_names_say(image_dir: Path) -> None:
    expected_modes = {
        "coffee_cmyk.jpg": "CMYK",
        "camera_gray.jpg": "L",
        "logo_rgba.png": "RGBA",
        "camera_la.png": "LA",
        "camera_1bit.png": "1",
        "chelsea_palette.png": "P",
        "coffee_palette_4bit.png": "P",
        "palette_2bit_trns.png": "P",
        "camera_16bit.png": "I;16",
        "camera_i16.png": "I;16",
        "astronaut_16bit.png": "RGB",
        "logo_16bit.png": "RGBA",
    }
    for name, mode in expected_modes.items():
        with Image.open(image_dir / name) as image:
            assert image.mode == mode, name
    with Image.open(image_dir / "astronaut_progressive.jpg") as image:
        assert image.info.get("progressive") or image.info.get("progression")


@pytest.mark.parametrize("color", ["rgb", "grayscale"])
@pytest.mark.parametrize("name", PNGS)
def test_png_decodes_exactly_as_pillow(image_dir: Path, name: str, color: str) -> None:
    decoded = tsnative.decode_image(str(image_dir / name), color=color)
    assert decoded.is_contiguous()
    assert_close_to_pillow(decoded, pillow_decode(image_dir / name, color), 0, f"{name} {color}")


@pytest.mark.parametrize("color", ["rgb", "grayscale"])
@pytest.mark.parametrize("name", JPEGS)
def test_jpeg_decodes_exactly_as_pillow(image_dir: Path, name: str, color: str) -> None:
    decoded = tsnative.decode_image(str(image_dir / name), color=color)
    assert decoded.is_contiguous()
    assert_close_to_pillow(decoded, pillow_decode(image_dir / name, color), 0, f"{name} {color}")


def test_the_format_comes_from_the_bytes_not_the_name(image_dir: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "really_a_png.jpg"
    disguised.write_bytes((image_dir / "astronaut.png").read_bytes())
    assert torch.equal(
        tsnative.decode_image(str(disguised)), torch.from_numpy(pillow_decode(disguised))
    )


# ---- Preprocessing ------------------------------------------------------------------------

SPECS = {
    "imagenet": {"resize": 256, "crop": 224},
    "small": {"resize": 64, "crop": 56},  # strong downscaling: the antialiasing matters
    "resize_only": {"resize": 300, "crop": 0},
    "crop_only": {"resize": 0, "crop": 16},
    "none": {"resize": 0, "crop": 0},
}


@pytest.mark.parametrize("spec", list(SPECS))
@pytest.mark.parametrize("name", list(IMAGES))
def test_preprocessing_matches_pillow_before_normalisation(
    image_dir: Path, name: str, spec: str, request: pytest.FixtureRequest
) -> None:
    path = image_dir / name
    identity = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    with Image.open(path) as image:
        smaller_side = min(image.size)
    if SPECS[spec]["resize"] == 0 and SPECS[spec]["crop"] > smaller_side:
        # torchvision would pad with zeros; tsnative refuses (see test_image.cpp).
        with pytest.raises(Exception, match="centre crop does not fit"):
            tsnative.load_image(str(path), **SPECS[spec], **identity)
        return
    actual = tsnative.load_image(str(path), **SPECS[spec], **identity, color="rgb")
    expected = pillow_preprocess(path, **SPECS[spec], **identity)
    assert actual.is_contiguous()
    # Without resampling the pipeline is exact: decode, crop, /255.
    atol = 0 if SPECS[spec]["resize"] == 0 else PREPROCESS_ATOL
    assert_close_to_pillow(actual, expected, atol, f"{name} {spec}", request)


@pytest.mark.parametrize(
    "name", ["astronaut_q75.jpg", "coffee_wide.png", "chelsea_tall.jpg", "astronaut_tiny.png"]
)
def test_imagenet_preprocessing_matches_pillow(
    image_dir: Path, name: str, request: pytest.FixtureRequest
) -> None:
    path = image_dir / name
    actual = tsnative.load_image(str(path))  # the defaults are the ImageNet eval transform
    expected = pillow_preprocess(path)
    assert actual.shape == (3, 224, 224)
    atol = PREPROCESS_ATOL / min(IMAGENET_STD)
    assert_close_to_pillow(actual, expected, atol, name, request)


# torchvision itself: the transform the deployment recipe writes, on a PIL image, and the same
# steps as transforms.v2 runs them on a uint8 tensor, with ATen's antialiased kernel as tsnative.
TORCHVISION_PHOTOS = [
    "astronaut_q75.jpg",
    "coffee_wide.png",
    "chelsea_tall.jpg",
    "rocket_interlaced.png",
    "camera.png",
    "coffee_cmyk.jpg",
]
# Same pixels, normalised in another order: float32 rounding of values up to 2.7 (7.2e-7 seen).
SAME_PIXELS_ATOL = 2e-6


@needs_torchvision
@pytest.mark.parametrize("name", TORCHVISION_PHOTOS)
def test_load_image_matches_torchvision_transforms(
    image_dir: Path, name: str, request: pytest.FixtureRequest
) -> None:
    transforms = torchvision.transforms
    eval_transform = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    expected = eval_transform(pillow_open(image_dir / name)).numpy()
    actual = tsnative.load_image(str(image_dir / name))
    atol = PREPROCESS_ATOL / min(IMAGENET_STD)  # Pillow's two 8-bit roundings, as above
    assert_close_to_pillow(actual, expected, atol, f"{name} torchvision.transforms", request)


@needs_torchvision
@pytest.mark.parametrize("name", TORCHVISION_PHOTOS)
def test_load_image_matches_torchvision_v2_on_uint8_tensors(image_dir: Path, name: str) -> None:
    from torchvision.transforms import v2

    eval_transform = v2.Compose(
        [
            v2.Resize(256, antialias=True),
            v2.CenterCrop(224),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    pixels = torch.from_numpy(pillow_decode(image_dir / name)).permute(2, 0, 1)  # RGB
    expected = eval_transform(pixels.contiguous()).numpy()
    actual = tsnative.load_image(str(image_dir / name))
    assert_close_to_pillow(actual, expected, SAME_PIXELS_ATOL, f"{name} transforms.v2")


@pytest.mark.parametrize(
    "name", ["camera.png", "camera_gray.jpg", "chelsea_q95.jpg", "logo_rgba.png"]
)
def test_grayscale_preprocessing_matches_pillow(
    image_dir: Path, name: str, request: pytest.FixtureRequest
) -> None:
    path = image_dir / name
    actual = tsnative.load_image(str(path), mean=(0.5,), std=(0.25,), color="grayscale")
    expected = pillow_preprocess(path, mean=(0.5,), std=(0.25,), color="grayscale")
    assert actual.shape == (1, 224, 224)
    assert_close_to_pillow(actual, expected, PREPROCESS_ATOL / 0.25, name, request)


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("chelsea_q95.jpg", (300, 451)),
        ("chelsea_tall.jpg", (300, 120)),
        ("coffee_wide.png", (100, 600)),
        ("rocket_thin.jpg", (3, 50)),
    ],
)
def test_resize_follows_torchvision_size_rule(image_dir: Path, name: str, shape) -> None:
    actual = tsnative.load_image(str(image_dir / name), resize=256, crop=0)
    assert tuple(actual.shape) == (3, *resized_size(*shape, 256))
    assert actual.dtype == torch.float32


def test_load_image_takes_a_preprocess_dict_as_classify_does(image_dir: Path) -> None:
    # The same spelling as export(preprocess=...) and classify(preprocess=...), and a model's own
    # Module.preprocess; keyword arguments still override it.
    path = image_dir / "coffee_wide.png"
    spec = {"resize": 40, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    expected = pillow_preprocess(path, **spec)
    actual = tsnative.load_image(path, spec)
    assert_close_to_pillow(actual, expected, PREPROCESS_ATOL / 0.25, "a preprocess dict")
    assert tsnative.load_image(path, spec, crop=16).shape == (3, 16, 16)
    torch.testing.assert_close(
        tsnative.load_image(path, "imagenet"), tsnative.load_image(path), rtol=0, atol=0
    )
