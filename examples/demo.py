"""`make demo`: train a digit classifier, export it, and classify real images natively.

1. Train a small CNN for a few seconds on scikit-learn's handwritten digits (real data that
   ships inside the package: no download).
2. Export it with tsnative.export: TorchScript, with its labels and preprocessing inside,
   checked against the eager model before the file is written.
3. Write the held-out digits as PNG files and classify them with the `ts-infer` binary,
   which decodes, preprocesses, batches and labels them with no Python inside.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tsnative
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

OUT_DIR = Path(__file__).resolve().parent.parent / "build" / "demo"
SIZE = 32  # the network sees 32x32; the 8x8 scans are upsampled by the preprocessing
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# What the native pipeline does to each PNG; training applies the same steps in PyTorch.
PREPROCESS = {"resize": SIZE, "crop": SIZE, "mean": [0.5], "std": [0.5], "color": "grayscale"}


class DigitNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16 * 8 * 8, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def to_pixels(digits: np.ndarray) -> np.ndarray:
    """The dataset's 0..16 intensities as 8-bit grayscale images, ink white on black."""
    return np.round(digits.reshape(-1, 8, 8) * (255 / 16)).astype(np.uint8)


def preprocess(pixels: np.ndarray) -> torch.Tensor:
    """PREPROCESS in PyTorch: bilinear (antialiased) resize, scale to [0, 1], normalise."""
    x = torch.from_numpy(pixels).float().unsqueeze(1)
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    return (x.round().clamp(0, 255) / 255 - 0.5) / 0.5


def train(images: torch.Tensor, targets: torch.Tensor, epochs: int = 15) -> nn.Module:
    torch.manual_seed(0)
    model = DigitNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(images[batch]), targets[batch]).backward()
            optimizer.step()
    print(f"  trained {epochs} epochs in {time.perf_counter() - start:.1f} s")
    return model.eval()


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    train_x, test_x, train_y, test_y = train_test_split(
        to_pixels(digits.data), digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    print(
        f"1. Training on {len(train_x)} handwritten digits (scikit-learn), {len(test_x)} held out"
    )
    model = train(preprocess(train_x), torch.from_numpy(train_y))

    model_path = OUT_DIR / "digits.pt"
    print(f"2. Exporting to {model_path}")
    tsnative.export(
        model,
        preprocess(train_x[:8]),
        model_path,
        labels=LABELS,
        preprocess=PREPROCESS,
        check_inputs=[preprocess(test_x[:64])],
    )

    image_dir = OUT_DIR / "heldout"
    image_dir.mkdir(exist_ok=True)
    for old in image_dir.glob("*.png"):
        old.unlink()
    paths = [image_dir / f"digit_{i:04d}.png" for i in range(len(test_x))]
    for path, pixels in zip(paths, test_x, strict=True):
        Image.fromarray(pixels, mode="L").save(path)
    print(f"3. Wrote {len(paths)} held-out digits as PNG files to {image_dir}\n")

    ts_infer = Path(sysconfig.get_path("scripts")) / "ts-infer"
    shown = [str(path.relative_to(OUT_DIR)) for path in paths[:3]]
    print(f"$ ts-infer {model_path.name} {' '.join(shown)} -k 2")
    subprocess.run([ts_infer, model_path.name, *shown, "-k", "2"], cwd=OUT_DIR, check=True)
    print("(true labels: " + ", ".join(LABELS[y] for y in test_y[:3]) + ")\n")

    print(f"$ ts-infer {model_path.name} {image_dir.name}/ --json -k 1")
    result = subprocess.run(
        [ts_infer, model_path, image_dir, "--json", "-k", "1", "--batch-size", "64"],
        capture_output=True,
        text=True,
        check=False,
    )
    print(result.stderr.strip())
    if result.returncode != 0:
        return 1
    predicted = {}
    for line in result.stdout.splitlines():
        record = json.loads(line)
        predicted[Path(record["path"]).name] = record["predictions"][0]["index"]
    native = np.array([predicted[path.name] for path in paths])
    with torch.no_grad():
        eager = model(preprocess(test_x)).argmax(1).numpy()
    accuracy = (native == test_y).mean()
    print(f"\nHeld-out accuracy of the native binary: {accuracy:.2%} ({len(paths)} images)")
    print(f"Native and eager predictions agree on {(native == eager).mean():.2%} of them")
    return 0 if accuracy > 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
