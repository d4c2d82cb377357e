"""Transfer learning with a native backbone, as in ocaml-torch's tutorial (there: a pretrained
ResNet-18 whose features feed a new linear layer; here, with no downloads, a backbone trained
on scikit-learn's digits 0-4 and transferred to 5-9).

1. Train a small CNN on the digits 0-4 (the "pretrained" backbone) and export it with
   tsnative.export: its `features` method, the layer before the classifier, comes along.
2. Run that backbone natively, frozen, over the digits 5-9 in batches: features for a small
   labelled subset (the training set) and for the held-out rest.
3. Train a new linear head on the native features in PyTorch (SGD with momentum, as the
   tutorial), printing the held-out accuracy each epoch and how long each step took.
4. Export backbone and head together, with their labels and preprocessing, and classify the
   held-out digits as PNG files through the native pipeline.

    .venv/bin/python examples/transfer_learning.py [--epochs 20] [--per-class 25]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tsnative
from demo import PREPROCESS, preprocess, to_pixels
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn
from tqdm import tqdm

OUT_DIR = Path(__file__).resolve().parent.parent / "build" / "transfer_learning"
DIGITS = range(5, 10)  # what the backbone never saw
LABELS = ["five", "six", "seven", "eight", "nine"]


class Backbone(nn.Module):
    """A digit CNN: `features` (exported with it) gives the 256 numbers its classifier sees."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Linear(16 * 4 * 4, classes)

    @torch.jit.export
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.body(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Transferred(nn.Module):
    """The frozen backbone's features, then the new head: what step 4 exports."""

    def __init__(self, backbone: Backbone, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.features(x))


@dataclass
class Result:
    feature_shape: list[int]
    feature_max_diff: float  # native features against the eager backbone's, all held-out
    feature_scale: float  # the largest eager feature, for a relative tolerance
    accuracies: list[float]  # held-out accuracy of the head after each epoch
    native_accuracy: float  # the exported model on the held-out PNGs, natively


def pretrain(images: torch.Tensor, targets: torch.Tensor, epochs: int) -> Backbone:
    torch.manual_seed(0)
    model = Backbone(classes=5)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(images[batch]), targets[batch]).backward()
            optimizer.step()
    return model.eval()


def native_features(backbone: tsnative.Module, images: torch.Tensor, name: str) -> torch.Tensor:
    batches = images.split(64)
    return torch.cat(
        [backbone.features(batch) for batch in tqdm(batches, desc=name, unit="batch", leave=False)]
    )


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return (logits.argmax(1) == targets).float().mean().item()


def main(epochs: int = 20, per_class: int = 25, out_dir: Path = OUT_DIR) -> Result:
    out_dir.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    pixels, targets = to_pixels(digits.data), digits.target
    old, new = targets < 5, targets >= 5

    start = time.perf_counter()
    backbone = pretrain(preprocess(pixels[old]), torch.from_numpy(targets[old]), epochs=8)
    backbone_path = out_dir / "backbone.pt"
    tsnative.export(backbone, preprocess(pixels[old][:8]), backbone_path, method="script")
    print(
        f"1. backbone trained on {old.sum()} digits 0-4 and exported to {backbone_path} "
        f"({time.perf_counter() - start:.1f} s)"
    )

    # The transfer set: `per_class` labelled digits of each of 5-9, the rest held out.
    generator = np.random.default_rng(0)
    train_index = np.concatenate(
        [generator.choice(np.flatnonzero(targets == d), per_class, replace=False) for d in DIGITS]
    )
    held_index = np.setdiff1d(np.flatnonzero(new), train_index)
    train_x, held_x = preprocess(pixels[train_index]), preprocess(pixels[held_index])
    train_y = torch.from_numpy(targets[train_index] - 5)
    held_y = torch.from_numpy(targets[held_index] - 5)

    start = time.perf_counter()
    native = tsnative.load(backbone_path)
    train_features = native_features(native, train_x, "features (train)")
    held_features = native_features(native, held_x, "features (held out)")
    with torch.no_grad():
        eager_features = backbone.features(held_x)
    print(
        f"2. native features: train {list(train_features.shape)}, held out "
        f"{list(held_features.shape)} ({time.perf_counter() - start:.2f} s)"
    )

    torch.manual_seed(0)
    head = nn.Linear(train_features.shape[1], len(LABELS))
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05, momentum=0.9)
    accuracies = []
    print(f"3. training a linear head on {len(train_y)} labelled digits 5-9, SGD with momentum")
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        for batch in torch.randperm(len(train_y)).split(16):
            optimizer.zero_grad()
            F.cross_entropy(head(train_features[batch]), train_y[batch]).backward()
            optimizer.step()
        with torch.no_grad():
            accuracies.append(accuracy(head(held_features), held_y))
        print(
            f"  epoch {epoch:3d}  accuracy: {100 * accuracies[-1]:5.2f}%  "
            f"({1000 * (time.perf_counter() - start):.1f} ms)"
        )

    start = time.perf_counter()
    model_path = out_dir / "digits_5_to_9.pt"
    model = Transferred(backbone, head.eval()).eval()
    tsnative.export(model, held_x[:8], model_path, labels=LABELS, preprocess=PREPROCESS)
    image_dir = out_dir / "heldout"
    image_dir.mkdir(exist_ok=True)
    paths = [image_dir / f"digit_{i:04d}.png" for i in range(len(held_index))]
    for path, image in zip(paths, pixels[held_index], strict=True):
        Image.fromarray(image, mode="L").save(path)
    results = tsnative.classify(model_path, paths, k=1, batch_size=64)
    predicted = torch.tensor([LABELS.index(result.top.label) for result in results])
    native_accuracy = (predicted == held_y).float().mean().item()
    print(
        f"4. exported to {model_path}; classified {len(paths)} held-out PNGs natively: "
        f"accuracy: {100 * native_accuracy:.2f}% ({time.perf_counter() - start:.1f} s)"
    )
    return Result(
        feature_shape=list(held_features.shape),
        feature_max_diff=(held_features - eager_features).abs().max().item(),
        feature_scale=eager_features.abs().max().item(),
        accuracies=accuracies,
        native_accuracy=native_accuracy,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=25)
    args = parser.parse_args()
    result = main(args.epochs, args.per_class)
    sys.exit(0 if result.native_accuracy >= 0.9 else 1)
