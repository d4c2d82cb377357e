"""The one place for tolerances and output comparison, for running ts-infer, and for the
Pillow reference of image preprocessing.

Tolerances are (rtol, atol as a fraction of the expected tensor's largest |value|): a float32
result computed in another order (conv-bn folded by freezing, oneDNN's blocked kernels, the
kernels of another torch build) is off by a few float32 ulps of the tensor's scale, not of each
element, so a model whose logits reach 10 and one whose outputs stay below 0.03 are held to the
same standard. Measured over the zoo, worst case, on torch 2.13.0 (CPU wheel) and 2.14.1 (CUDA
wheel), relative to the scale: as saved 1.5e-7 (a traced TransformerEncoder: the trace holds
the slow-path ops, eager under no_grad takes the fused fast path); optimize="exact" 1.8e-6
(ResNet-18 on 2.14.1, where tsnative equals torch's own freeze + oneDNN fusion); bfloat16
4.8e-2 (MobileNetV3). Each tolerance below leaves at least 2x, mostly 5x, over its measurement.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

# torchvision where it is installed: make test-compat has PyPI's torch 2.14.1 + torchvision
# 0.29.1, and fails if it does not import; make test's CPU torch 2.13.0 has none (PyPI's does
# not load beside it: "operator torchvision::nms does not exist"). Only its absence skips: a
# torchvision that is there and fails to load is an error, not a skip that hides the tests.
try:
    import torchvision
except ImportError as error:
    torchvision = None
    TORCHVISION_MISSING = (
        f"torchvision is not installed here ({error}); make test-compat runs these tests with "
        "torch 2.14.1 + torchvision 0.29.1"
    )
else:
    TORCHVISION_MISSING = ""
needs_torchvision = pytest.mark.skipif(torchvision is None, reason=TORCHVISION_MISSING)

# dtype -> (rtol, atol / scale) for "close" comparisons; other dtypes (integers, bool) must be
# equal. The native run of a file against eager: 1.5e-7 measured.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-6, 1e-6),
    torch.float64: (1e-12, 1e-12),
}
# Image preprocessing vs the Pillow reference, before normalisation: Pillow rounds to 8 bits
# after each resampling pass, ATen's uint8 antialiased kernel once; at most one 8-bit step
# apart (tests/test_image_parity.py), plus float32 error. After normalisation: / min(std).
PIXEL_ATOL = 1 / 255 + 1e-6
# Class probabilities of conftest's tiny classifier fed tsnative's vs Pillow's preprocessing:
# the <= 1/255 pixel differences move them by at most 2.0e-4 (measured); 5x headroom.
PILLOW_PROBABILITY_ATOL = 1e-3
# optimize="exact" vs eager: freezing folds conv-bn and oneDNN kernels sum in another order;
# 1.8e-6 measured (float32), 2.8e-16 (float64).
OPTIMIZED_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-12, 1e-12),
}
# optimize="bf16" vs eager: weights and activations rounded to 8 significant bits, layer after
# layer; 4.8e-2 measured. Top-5 equality is checked beside it.
BF16_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {torch.float32: (0.0, 0.1)}
# CUDA vs CPU: different kernels (cuDNN, TF32 off by default for matmul but not for conv).
CROSS_DEVICE_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-3, 1e-4),
    torch.float64: (1e-7, 1e-7),
}


def assert_outputs_equal(
    actual: Any,
    expected: Any,
    *,
    exact: bool,
    tolerances: dict[torch.dtype, tuple[float, float]] = TOLERANCES,
    path: str = "output",
) -> None:
    """Walks tensors / tuples / lists / dicts / scalars; checks container types, dtype, shape.

    exact=True: torch.equal (bit-identical). exact=False: assert_close with `tolerances`, atol
    scaled by each expected tensor's largest |value| (dtypes without an entry, e.g. integers,
    must still be equal).
    """
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f"{path}: expected a tensor, got {type(actual)}"
        assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{path}: shape {actual.shape} != {expected.shape}"
        assert actual.device == expected.device, f"{path}: {actual.device} != {expected.device}"
        if exact or expected.dtype not in tolerances:
            assert torch.equal(actual, expected), (
                f"{path}: not bit-identical, max abs diff {max_abs_diff(actual, expected):.3e}"
            )
        else:
            rtol, atol = tolerances[expected.dtype]
            scale = expected.abs().max().item() if expected.numel() else 0.0
            torch.testing.assert_close(
                actual, expected, rtol=rtol, atol=atol * scale, msg=lambda m: f"{path}: {m}"
            )
    elif isinstance(expected, Mapping):
        assert isinstance(actual, Mapping), f"{path}: expected a dict, got {type(actual)}"
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_outputs_equal(
                actual[key],
                expected[key],
                exact=exact,
                tolerances=tolerances,
                path=f"{path}[{key!r}]",
            )
    elif isinstance(expected, (tuple, list)):
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_outputs_equal(a, e, exact=exact, tolerances=tolerances, path=f"{path}[{i}]")
    else:
        assert type(actual) is type(expected) and actual == expected, f"{path}: {actual!r}"


def max_abs_diff(actual: Any, expected: Any) -> float:
    """The largest absolute difference between any pair of tensors in two like structures."""
    if isinstance(expected, torch.Tensor):
        if expected.numel() == 0:
            return 0.0
        return (actual.double() - expected.double()).abs().max().item()
    if isinstance(expected, Mapping):
        return max((max_abs_diff(actual[k], expected[k]) for k in expected), default=0.0)
    if isinstance(expected, Sequence) and not isinstance(expected, str):
        return max((max_abs_diff(a, e) for a, e in zip(actual, expected, strict=True)), default=0.0)
    return 0.0


def to_cpu(value: Any) -> Any:
    """The same structure with every tensor moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, Mapping):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(to_cpu(item) for item in value)
    return value


def eager_topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference post-processing: softmax over the last dim, then the k best (clamped)."""
    probabilities = torch.softmax(logits, dim=-1)
    values, indices = probabilities.topk(min(k, logits.shape[-1]), dim=-1)
    return values, indices


def is_logits(output: Any) -> bool:
    """Whether top-k applies to an output: one floating tensor with at least one dimension."""
    return isinstance(output, torch.Tensor) and output.is_floating_point() and output.dim() >= 1


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh Python (this one's interpreter): for checks that must not share
    the test process (a crash, registered operators, peak memory)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def run_cli(
    binary: Path,
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> tuple[int, str, str]:
    """Runs ts-infer as a user would; returns (returncode, stdout, stderr). `timeout`: more
    for runs that time variants (emulated bfloat16 on a CPU without it is slow)."""
    result = subprocess.run(
        [os.fspath(binary), *map(os.fspath, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pillow_preprocess(
    path: os.PathLike[str] | str,
    resize: int = 256,
    crop: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    color: str = "rgb",
) -> torch.Tensor:
    """The reference of tsnative.load_image: torchvision's Resize / CenterCrop / ToTensor /
    Normalize on a PIL image, written with Pillow and numpy. Float32 CHW.

    Resize: the shorter side to `resize`, the longer int(resize * long / short) (torchvision's
    rule), Image.BILINEAR (antialiased by Pillow when shrinking); 0 keeps the size. CenterCrop:
    offsets round((size - crop) / 2); 0 keeps the image. Empty mean / std: no Normalize.
    """
    with Image.open(path) as opened:
        image = opened.convert("RGB" if color == "rgb" else "L")
    if resize:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        new_long = int(resize * long / short)
        size = (resize, new_long) if width <= height else (new_long, resize)
        if size != image.size:
            image = image.resize(size, Image.BILINEAR)
    array = np.array(image)  # a writable copy: torch.from_numpy warns on read-only arrays
    array = array[..., None] if array.ndim == 2 else array
    if crop:
        top = round((array.shape[0] - crop) / 2)
        left = round((array.shape[1] - crop) / 2)
        array = array[top : top + crop, left : left + crop]
    chw = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float() / 255
    if mean:
        chw = (chw - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    return chw


def run_cli_on_terminal(binary: Path, *args: str | os.PathLike[str]) -> tuple[int, str, str]:
    """Runs ts-infer with stderr on a pseudo-terminal (stdout a pipe); returns (returncode,
    stdout, what the terminal received). The terminal turns each line feed into CR LF."""
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [os.fspath(binary), *map(os.fspath, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    ) as process:
        os.close(follower)
        stdout = process.stdout.read() if process.stdout else ""
        received = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            received += chunk
        os.close(leader)
        code = process.wait(timeout=120)
    return code, stdout, received.decode()
