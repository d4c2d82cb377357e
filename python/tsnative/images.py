"""Images through the C++ pipeline: decoding, preprocessing, and classification."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from . import _C
from .module import Module, PathLike, load

Preprocessing = Literal["imagenet"] | Mapping[str, Any]
_PREPROCESS_KEYS = ("resize", "crop", "mean", "std", "color")


def make_overrides(
    spec: Preprocessing | None = None, /, **overrides: Any
) -> _C.PreprocessOverrides:
    """Preprocessing changes: "imagenet" (none) or a dict, then keyword arguments (None: unset)."""
    values: dict[str, Any] = {}
    if spec is not None and spec != "imagenet":
        if not isinstance(spec, Mapping):
            raise TypeError(f"preprocess must be 'imagenet' or a dict, not {type(spec).__name__}")
        values.update(spec)
    values.update({key: value for key, value in overrides.items() if value is not None})
    unknown = set(values) - set(_PREPROCESS_KEYS)
    if unknown:
        raise ValueError(
            f"unknown preprocess keys {sorted(unknown)}; expected {list(_PREPROCESS_KEYS)}"
        )
    result = _C.PreprocessOverrides()
    for key, value in values.items():
        setattr(result, key, list(value) if key in ("mean", "std") else value)
    return result


def make_preprocess(spec: Preprocessing | None = None, /, **overrides: Any) -> _C.Preprocess:
    """A complete, validated Preprocess: the ImageNet defaults with `spec` and `overrides`."""
    return _C.apply_overrides(_C.Preprocess(), make_overrides(spec, **overrides))


def decode_image(path: PathLike, color: Literal["rgb", "grayscale"] = "rgb") -> torch.Tensor:
    """Decodes a JPEG or PNG to a uint8 HWC tensor (C = 3, or 1 for grayscale)."""
    return _C.decode_image(os.fspath(path), color)


def load_image(
    path: PathLike,
    preprocess: Preprocessing | None = None,
    *,
    resize: int | None = None,
    crop: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    color: Literal["rgb", "grayscale"] | None = None,
) -> torch.Tensor:
    """Decodes and preprocesses an image like torchvision's ImageNet eval transform.

    Resize the shorter side to `resize` (bilinear, antialiased), centre-crop `crop`, scale to
    [0, 1], normalise with `mean` / `std`. Unset arguments take the ImageNet defaults
    (256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "rgb"). `preprocess` takes the
    same as export's and classify's ("imagenet", or a dict of those keys, e.g. a model's
    ``Module.preprocess``); the keyword arguments override it. Returns float32 CHW.
    """
    spec = make_preprocess(preprocess, resize=resize, crop=crop, mean=mean, std=std, color=color)
    return _C.load_image(os.fspath(path), spec)


@dataclass(frozen=True, slots=True)
class Prediction:
    index: int
    probability: float
    label: str | None


@dataclass(frozen=True, slots=True)
class Classification:
    path: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None

    @property
    def top(self) -> Prediction | None:
        """The best prediction, or None if the file could not be classified."""
        return self.predictions[0] if self.predictions else None


def classify(
    model: Module | PathLike,
    images: PathLike | Iterable[PathLike],
    *,
    k: int | None = None,
    batch_size: int = 16,
    labels: Sequence[str] | PathLike | None = None,
    preprocess: Preprocessing | None = None,
    progress: bool | None = None,
) -> list[Classification]:
    """Classifies image files (or every JPEG / PNG in a folder) with the native pipeline.

    k: the classes per image (unset: 5, or all where there are fewer; more than the model
    has is a ValueError). Preprocessing and labels come from the model's metadata;
    `preprocess` (a dict) changes the fields it names, and `labels` (names, a text file or
    "imagenet") replaces them. Files that cannot be read are returned with `error` set, not
    raised; a folder without JPEG or PNG
    files is an InputError. `progress`: a tqdm bar (None: only when there is more than one
    batch and stderr is a terminal). Ctrl-C stops the run within a batch (KeyboardInterrupt).
    """
    module = model if isinstance(model, Module) else load(model)
    paths = (
        [os.fspath(images)]
        if isinstance(images, str | os.PathLike)
        else [os.fspath(image) for image in images]
    )
    options = _C.ClassifyOptions()
    options.k = k
    options.batch_size = batch_size
    options.preprocess = make_overrides(preprocess)  # over the model's own, in the core
    if isinstance(labels, str | os.PathLike):
        options.labels = _C.resolve_labels(os.fspath(labels))
    elif labels is not None:
        options.labels = list(labels)

    files = _C.expand_image_paths(paths)
    bar = _progress_bar(len(files), batch_size, progress)
    try:
        callback = None if bar is None else (lambda done, _total: bar.update(done - bar.n))
        results = module._model.classify(files, options, callback)
    finally:
        if bar is not None:
            bar.close()
    # One str per label, shared by every prediction that names it (not one per prediction).
    label_names: dict[str, str] = {}
    return [
        Classification(
            path=result.path,
            predictions=[
                Prediction(p.index, p.probability, label_names.setdefault(p.label, p.label) or None)
                for p in result.predictions
            ],
            error=result.error or None,
        )
        for result in results
    ]


def _progress_bar(total: int, batch_size: int, wanted: bool | None):
    import sys

    if wanted is False or (wanted is None and (total <= batch_size or not sys.stderr.isatty())):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="image", desc="classifying")
