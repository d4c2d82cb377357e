"""Writes the fuzzers' seed corpora: small valid files of each kind the core reads.

    python tests/fuzz/make_seeds.py OUT_DIR

OUT_DIR/<harness>/ gets images (every PNG and JPEG variant the decoder has a branch for, each
prefixed with the harness's choice byte), torch.save files, metadata JSON and label files
taken from real exports, TorchScript archives (plain, with submodules and methods, traced, with
a TorchScript class), an AOTInductor package and call specs. Everything is made here, from fixed
seeds: nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import tsnative
from PIL import Image
from torch import Tensor, nn


def images() -> dict[str, bytes]:
    generator = np.random.default_rng(0)
    rgb = Image.fromarray(generator.integers(0, 256, (12, 9, 3), dtype=np.uint8))
    variants = {
        "rgb": rgb,
        "l": rgb.convert("L"),
        "rgba": rgb.convert("RGBA"),
        "la": rgb.convert("LA"),
        "p": rgb.convert("P"),
        "1": rgb.convert("1"),
        "i16": Image.fromarray(generator.integers(0, 65536, (7, 5), dtype=np.uint16)),
        "cmyk": rgb.convert("CMYK"),
    }
    files = {}
    for name, image in variants.items():
        if name != "cmyk":
            out = io.BytesIO()
            image.save(out, "PNG", compress_level=9)
            files[f"{name}.png"] = out.getvalue()
        if name in ("rgb", "l", "cmyk"):
            for progressive in (False, True):
                out = io.BytesIO()
                image.save(out, "JPEG", quality=80, progressive=progressive)
                files[f"{name}{'_progressive' if progressive else ''}.jpg"] = out.getvalue()
    return files


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.head = nn.Linear(2, 3)
        self.scale = 0.5

    @torch.jit.export
    def embed(self, x: Tensor) -> Tensor:
        return self.conv(x).mean((2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x)) * self.scale


@torch.jit.script
class Box:
    def __init__(self, value: Tensor) -> None:
        self.value = value

    def doubled(self) -> Tensor:
        return self.value * 2


class MakesBoxes(nn.Module):
    def forward(self, x: Tensor) -> Box:
        return Box(x)


def models(directory: Path) -> dict[str, bytes]:
    torch.manual_seed(0)
    example = torch.rand(1, 3, 8, 8)
    exported = directory / "exported.pt"
    tsnative.export(
        Small(), example, exported, labels=["a", "b", "c"], preprocess={"resize": 8, "crop": 8}
    )
    files = {"exported.pt": exported.read_bytes()}
    for name, module in {
        "scripted.pt": torch.jit.script(Small()),
        "traced.pt": torch.jit.trace(nn.Sequential(nn.Linear(4, 2), nn.ReLU()), torch.rand(1, 4)),
        "class.pt": torch.jit.script(MakesBoxes()),
    }.items():
        out = io.BytesIO()
        torch.jit.save(module, out)
        files[name] = out.getvalue()
    return files


def packages(directory: Path) -> dict[str, bytes]:
    """The package harness's seeds: a .pt2 export (choice byte 0) and call specs (byte 1)."""
    torch.manual_seed(0)
    exported = directory / "exported.pt2"
    tsnative.export(
        Small(), torch.rand(1, 3, 8, 8), exported, labels=["a", "b", "c"], progress=False
    )
    files = {"exported.pt2": b"\x00" + exported.read_bytes()}
    exported.unlink()
    x = torch.zeros(1)
    for name, outputs in {
        "tensor": x,
        "tuple": (x, x),
        "nested": {"logits": x, "parts": [x, (x, x)]},
        "int_keys": {0: x, 1: x},
    }.items():
        spec = torch.utils._pytree.treespec_dumps(torch.utils._pytree.tree_structure(outputs))
        files[f"{name}.json"] = b"\x01" + spec.encode()
    return files


def tensors() -> dict[str, bytes]:
    files = {}
    for name, value in {
        "tensor.pt": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "tuple.pt": (torch.ones(2, dtype=torch.int64), torch.zeros(1, 2, dtype=torch.float16)),
        "dict.pt": {"x": torch.rand(3), "y": torch.tensor([True, False])},
        "list.pt": [torch.rand(2, 2), torch.tensor(3.0)],
    }.items():
        out = io.BytesIO()
        torch.save(value, out)
        files[name] = out.getvalue()
    return files


def requests() -> dict[str, bytes]:
    """Infer request bodies (choice byte 0: all JSON) and one with binary tensor data (byte 1,
    then the JSON's length)."""
    inputs = [
        {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1.5, 2], [3, 4]]},
        {"name": "ids", "datatype": "INT64", "shape": [3], "data": [1, -2, 3]},
        {"name": "flags", "datatype": "BOOL", "shape": [2], "data": [True, False]},
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]},
    ]
    request = {"id": "7", "inputs": inputs, "outputs": [{"name": "y"}]}
    binary_header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP16",
                    "shape": [2],
                    "parameters": {"binary_data_size": 4},
                },
                {
                    "name": "s",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": 7},
                },
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary_data = torch.tensor([1.0, -2.0], dtype=torch.float16).numpy().tobytes()
    binary_data += (3).to_bytes(4, "little") + b"abc"
    return {
        "json.json": b"\x00" + json.dumps(request).encode(),
        "binary.bin": b"\x01"
        + len(binary_header).to_bytes(2, "little")
        + binary_header
        + binary_data,
    }


def write(directory: Path, files: dict[str, bytes], prefixes: tuple[bytes, ...] = (b"",)) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        for prefix in prefixes:
            (directory / f"{prefix.hex()}{name}").write_bytes(prefix + data)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    archives = models(out)
    with zipfile.ZipFile(io.BytesIO(archives["exported.pt"])) as archive:
        metadata = next(archive.read(n) for n in archive.namelist() if n.endswith("tsnative.json"))
    # The choice byte: RGB with resize and crop, grayscale, no resize, no crop.
    write(out / "image", images(), prefixes=(b"\x00", b"\x01", b"\x02", b"\x06"))
    package_files = packages(out)
    write(out / "model", {**archives, "exported.pt2": package_files["exported.pt2"][1:]})
    write(out / "package", package_files)
    write(out / "tensor_file", tensors())
    write(out / "metadata", {"exported.json": metadata, "minimal.json": b"{}"})
    write(out / "infer_request", requests())
    write(out / "labels", {"three.txt": b"a\nb\nc\n", "crlf.txt": b"cat\r\ndog\r\n"})
    (out / "exported.pt").unlink()


if __name__ == "__main__":
    main()
