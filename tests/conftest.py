"""Shared fixtures: the ts-infer binary, the session-wide store of saved models, and for the
image tests a folder of small photos with a tiny classifier exported for them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import tsnative
from helpers import pillow_preprocess
from PIL import Image
from torch import Tensor, nn
from tsnative.serve import ts_infer_path

# examples/resnet18.py is imported by models.py as `from resnet18 import resnet18`.
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from models import SavedModels  # noqa: E402  (needs EXAMPLES on sys.path)

# No remembered choices (tsnative.load's cache_dir) in the tests, theirs or the user's: each
# load that times its variants must time them. The cache's own tests give it a directory.
# Set before any model loads, and inherited by the ts-infer processes the tests start.
os.environ["TSNATIVE_CACHE_DIR"] = ""


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> SavedModels:
    return SavedModels(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def ts_infer() -> Path:
    """The installed ts-infer (in the scripts directory of the Python running the tests), or
    the build that $TSNATIVE_TS_INFER names."""
    try:
        return ts_infer_path()
    except FileNotFoundError as missing:
        pytest.fail(f"{missing}: run `make setup`")


# --- Images and a tiny classifier for the classification tests -----------------------------


class TinyClassifier(nn.Module):
    """5 classes from an image of any size, RGB or grayscale. RGB is first mixed to one
    channel with unequal weights (so channel order matters); the features are the mean of
    each quadrant and of four ReLU'd 3x3 convolutions; a linear layer scores them."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mix", torch.tensor([0.9, -0.6, 0.4]))
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.fc = nn.Linear(8, 5)

    def features(self, x: Tensor) -> Tensor:
        if x.shape[1] == 3:
            x = (x * self.mix.view(1, 3, 1, 1)).sum(1, keepdim=True)
        quadrants = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return torch.cat([quadrants, torch.relu(self.conv(x)).mean((2, 3))], 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


@dataclass(frozen=True)
class Classifier:
    """An exported TinyClassifier: the file, its eager model and the metadata it carries."""

    path: Path
    eager: nn.Module
    labels: list[str]
    preprocess: dict[str, Any]


# One class per photo of `photo_dir`, in sorted file order.
TINY_LABELS = ["astronaut", "cameraman", "tabby, tabby cat", "coffee mug", "space shuttle"]
TINY_PREPROCESS: dict[str, Any] = {
    "resize": 48,
    "crop": 40,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "color": "rgb",
}


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory, photo_dir: Path) -> Classifier:
    """TinyClassifier fitted to tell the photos of `photo_dir` apart, exported with
    tsnative.export (labels and preprocessing inside).

    The linear layer is solved by least squares on the features of the Pillow-preprocessed
    photos so that photo i ranks the classes i, i+1, ... (mod 5) with logits 0.8-1.2 apart: every
    photo has its own answer and no near-ties; the gaps grow with i, so each photo also has
    its own probabilities.
    """
    torch.manual_seed(0)
    model = TinyClassifier().eval()
    photos = sorted(photo_dir.iterdir())
    batch = torch.stack([pillow_preprocess(path, **TINY_PREPROCESS) for path in photos])
    n = len(photos)
    target = torch.tensor(
        [[(0.8 + 0.1 * i) * (2 - (j - i) % n) for j in range(n)] for i in range(n)]
    )
    with torch.no_grad():
        features = torch.cat([model.features(batch), torch.ones(n, 1)], 1).double()
        solution = torch.linalg.lstsq(features, target.double(), driver="gelsd").solution
        model.fc.weight.copy_(solution[:-1].T)
        model.fc.bias.copy_(solution[-1])
    path = tmp_path_factory.mktemp("classifier") / "tiny.pt"
    tsnative.export(
        model, torch.rand(1, 3, 40, 40), path, labels=TINY_LABELS, preprocess=TINY_PREPROCESS
    )
    return Classifier(path, model, TINY_LABELS, TINY_PREPROCESS)


def _small_photos() -> dict[str, Image.Image]:
    """Crops and downscales (<= 128 px) of scikit-image's sample photos, several shapes."""
    from skimage import data

    def photo(array: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]):
        return Image.fromarray(array).crop(box).resize(size, Image.LANCZOS)

    return {
        "coffee.png": photo(data.coffee(), (0, 0, 600, 400), (120, 80)),
        "astronaut.jpg": photo(data.astronaut(), (100, 0, 400, 300), (100, 100)),
        "chelsea.png": photo(data.chelsea(), (50, 0, 350, 300), (64, 64)),
        "rocket.jpg": photo(data.rocket(), (150, 0, 450, 427), (72, 102)),
        "camera.png": photo(data.camera(), (0, 0, 512, 512), (90, 90)),  # grayscale
    }


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of five small photos (PNG and JPEG, RGB and gray), written in unsorted order."""
    directory = tmp_path_factory.mktemp("photos")
    for name, image in _small_photos().items():
        options = {"quality": 90} if name.endswith(".jpg") else {}
        image.save(directory / name, **options)
    return directory


@pytest.fixture(scope="session")
def classifier_as(
    tiny_classifier: Classifier, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """The tiny classifier exported to a format of tsnative.FORMATS ("torchscript" gives
    tiny_classifier's own file), once per session, with its labels and preprocessing; the
    batch of .pt2 and .onnx stays dynamic (a package from a batch of one, as size-oblivious
    export allows; ONNX from two, as torch.onnx.export needs)."""
    exported: dict[str, Path] = {"torchscript": tiny_classifier.path}

    def export(format_name: str) -> Path:
        if format_name not in exported:
            suffix = tsnative.formats.named(format_name).suffix
            path = tmp_path_factory.mktemp(f"{format_name}_classifier") / f"tiny{suffix}"
            tsnative.export(
                tiny_classifier.eager,
                torch.rand(2 if format_name == "onnx" else 1, 3, 40, 40),
                path,
                labels=tiny_classifier.labels,
                preprocess=tiny_classifier.preprocess,
                progress=False,
            )
            exported[format_name] = path
        return exported[format_name]

    return export


@pytest.fixture(scope="session")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_classifier: Classifier,
    classifier_as: Callable[[str], Path],
) -> Iterator[Any]:
    """One `ts-infer serve` for every serving test (REST and gRPC): see tests/serving.py."""
    from serving import serve_repository

    yield from serve_repository(
        tmp_path_factory.mktemp("repository"), tiny_classifier.eager, classifier_as
    )


@pytest.fixture(scope="session")
def classifier_package(classifier_as: Callable[[str], Path]) -> Path:
    """The tiny classifier as an AOTInductor package."""
    return classifier_as("aoti")
