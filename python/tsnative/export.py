"""`export`: eager model -> TorchScript file that describes itself and is proven to match."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from . import _C
from .images import Preprocessing, make_preprocess
from .module import Module, PathLike, load

Labels = Literal["imagenet"] | PathLike | Sequence[str]


class ExportError(RuntimeError):
    """The model could not be exported, or the exported file does not match the eager model."""


def _as_tuple(inputs: Any) -> tuple[Any, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def _resolve_labels(labels: Labels | None) -> list[str]:
    if labels is None:
        return []
    if isinstance(labels, str | os.PathLike):
        return _C.resolve_labels(os.fspath(labels))
    return [str(label) for label in labels]


def _to_script(model: torch.nn.Module, example: tuple[Any, ...], method: str):
    """Returns (scripted module, method used, tracer warnings)."""
    if method in ("auto", "script"):
        try:
            return torch.jit.script(model), "script", []
        except Exception as error:
            if method == "script":
                raise ExportError(f"torch.jit.script failed: {error}") from error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        try:
            # strict=False: models returning a dict or list trace too.
            traced = torch.jit.trace(model, example, check_trace=False, strict=False)
        except Exception as error:
            raise ExportError(f"torch.jit.trace failed: {error}") from error
    return traced, "trace", [str(w.message) for w in caught]


def _check_one_label_per_class(native: Module, example: tuple[Any, ...], labels: list[str]) -> None:
    output = native(*example) if labels else None
    if isinstance(output, torch.Tensor) and output.dim() >= 1 and output.shape[-1] != len(labels):
        raise ExportError(
            f"{len(labels)} labels for a model with {output.shape[-1]} classes (the last "
            f"dimension of its output, {list(output.shape)}): give one label per class"
        )


def _check_matches_eager(
    model: torch.nn.Module,
    native: Module,
    input_sets: list[tuple[Any, ...]],
    method_used: str,
    tracer_warnings: list[str],
    rtol: float,
    atol: float,
) -> None:
    for number, inputs in enumerate(input_sets):
        with torch.no_grad():
            expected = model(*inputs)
        actual = native(*inputs)
        try:
            torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
        except AssertionError as mismatch:
            which = "the example input" if number == 0 else f"check input #{number}"
            hint = ""
            if method_used == "trace":
                hint = (
                    " Tracing records the one path the example input took, so data-dependent "
                    "control flow (e.g. `if x.sum() > 0:`) is frozen; export with "
                    "method='script' (or make the model scriptable)."
                )
                if tracer_warnings:
                    hint += " The tracer warned: " + " | ".join(tracer_warnings)
            raise ExportError(
                f"the {method_used}d model does not match the eager model on {which}: "
                f"{str(mismatch).strip().splitlines()[0].rstrip('.')}.{hint}"
            ) from None


def export(
    model: torch.nn.Module,
    example_inputs: Any,
    path: PathLike,
    *,
    method: Literal["auto", "script", "trace"] = "auto",
    labels: Labels | None = None,
    preprocess: Preprocessing | None = None,
    check_inputs: Sequence[Any] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> Module:
    """Saves `model` as a TorchScript file that carries its labels and preprocessing.

    method: "script" compiles the Python code; "trace" records one run on `example_inputs`;
    "auto" scripts when it can and traces otherwise. Either way the saved file is then run
    natively on `example_inputs` and every entry of `check_inputs` (each a tensor or a tuple
    of arguments) and compared with the eager model (rtol/atol); a mismatch raises
    ExportError and leaves `path` untouched.

    labels: a list of class names, a text file (one per line), or "imagenet".
    preprocess: "imagenet", or a dict with any of resize, crop, mean, std, color.
    Returns the exported file, loaded.
    """
    if method not in ("auto", "script", "trace"):
        raise ValueError(f"method must be 'auto', 'script' or 'trace', not {method!r}")
    model = model.eval()
    example = _as_tuple(example_inputs)
    scripted, method_used, tracer_warnings = _to_script(model, example, method)

    metadata = _C.Metadata()
    metadata.labels = _resolve_labels(labels)
    if preprocess is not None:
        metadata.preprocess = make_preprocess(preprocess)
    if isinstance(example[0], torch.Tensor):
        metadata.input_shape = list(example[0].shape)
    metadata.tsnative_version = _C.__version__
    metadata.export_method = method_used

    path = Path(path)
    staging = path.with_name(path.name + ".partial")
    torch.jit.save(scripted, str(staging), _extra_files={_C.METADATA_FILE: metadata.to_json()})
    try:
        native = load(staging)
        input_sets = [example] + [_as_tuple(inputs) for inputs in check_inputs or ()]
        _check_matches_eager(
            model, native, input_sets, method_used, tracer_warnings, rtol=rtol, atol=atol
        )
        _check_one_label_per_class(native, example, metadata.labels)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, path)
    return load(path)
