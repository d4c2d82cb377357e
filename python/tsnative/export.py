"""`export`: eager model -> a TorchScript, AOTInductor or ONNX file that describes itself,
proven to match."""

from __future__ import annotations

import fnmatch
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from . import _C, accuracy, formats
from .backends import ExportOptions, WriteFailure
from .backends._torch_export import at_batch, shows_progress, stage
from .images import Preprocessing, make_preprocess
from .module import Module, PathLike, load

Labels = Literal["imagenet"] | PathLike | Sequence[str]


# Where the outputs are class scores (the export has labels) and no threshold is given.
DEFAULT_MIN_TOP1_AGREEMENT = 0.95


class ExportError(RuntimeError):
    """The model could not be exported, or the exported file does not match the eager model."""


class ExportWarning(UserWarning):
    """A file was written with strict=False although its trace may not equal the model."""


def _as_tuple(inputs: Any) -> tuple[Any, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def _resolve_labels(labels: Labels | None) -> list[str]:
    if labels is None:
        return []
    if isinstance(labels, str | os.PathLike):
        return _C.resolve_labels(os.fspath(labels))
    return [str(label) for label in labels]


def _check_one_label_per_class(native: Module, example: tuple[Any, ...], labels: list[str]) -> None:
    output = native(*example) if labels else None
    if isinstance(output, torch.Tensor) and output.dim() >= 1 and output.shape[-1] != len(labels):
        raise ExportError(
            f"{len(labels)} labels for a model with {output.shape[-1]} classes (the last "
            f"dimension of its output, {list(output.shape)}): give one label per class"
        )


def _flat(output: Any) -> list[Any]:
    """An output's tensors in order: an ONNX model returns a flat tuple of what eager nests."""
    return torch.utils._pytree.tree_leaves(output)


def _check_matches_eager(
    model: torch.nn.Module,
    native: Module,
    input_sets: list[tuple[str, tuple[Any, ...]]],
    how: str,
    hint: str,
    rtol: float,
    atol: float,
    flat: bool,
) -> None:
    """Runs the written file on each named input set and compares it with eager."""
    for which, inputs in input_sets:
        with torch.no_grad():
            expected = model(*inputs)
        try:
            actual = native(*inputs)
        except _C.InferenceError as error:
            raise ExportError(
                f"the {how} model failed on {which}: {str(error).splitlines()[0]}.{hint}"
            ) from None
        try:
            if flat:
                torch.testing.assert_close(_flat(actual), _flat(expected), rtol=rtol, atol=atol)
            else:
                torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
        except AssertionError as mismatch:
            raise ExportError(
                f"the {how} model does not match the eager model on {which}: "
                f"{str(mismatch).strip().splitlines()[0].rstrip('.')}.{hint}"
            ) from None


Format = str  # one of formats.NAMES (tsnative.FORMATS)


def _format_of(path: Path, format: Format | None) -> formats.Format:
    if format is not None:
        return formats.named(format)
    found = formats.by_suffix(path.suffix)
    if found is None:
        raise ExportError(
            f"cannot tell the format from the name {path.name!r}: the known suffixes are "
            f"{formats.suffixes()}; or say it with format= (one of those names)"
        )
    return found


def _claim(staging: Path, path: Path) -> None:
    """Creates the file the export is written to before it replaces `path`; an ExportError with
    the system's reason (no such folder, read-only, no permission) if that cannot be done."""
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {str(path)!r}: there is no folder {str(path.parent)!r}")
    try:
        staging.open("wb").close()
    except OSError as error:
        raise ExportError(f"cannot write {str(path)!r}: {error.strerror}") from None


def _first_dimensions(example: tuple[Any, ...]) -> set[int]:
    """The sizes of the example's tensors' first dimensions (one: a shared batch)."""
    return {value.shape[0] for value in example if isinstance(value, torch.Tensor) and value.dim()}


def _grown_batch(example: tuple[Any, ...], static: Sequence[int]) -> tuple[Any, ...] | None:
    """The example grown to the smallest batch above its own that no static model of the
    package answers (so the dynamic model does), to prove its dynamic batch dimension; None
    if the example's tensors do not share a first dimension."""
    sizes = _first_dimensions(example)
    if len(sizes) != 1:
        return None
    rows = sizes.pop() + 1
    while rows in static:
        rows += 1
    return at_batch(example, rows)


def _calibration_batches(
    quantize: str | None, calibration: Iterable[Any] | None, chosen: formats.Format
) -> tuple[tuple[Any, ...], ...]:
    """The calibration batches as argument tuples; ValueError if quantize and calibration do
    not go together, or with this format."""
    if quantize is None:
        if calibration is not None:
            raise ValueError("calibration= is for quantize='int8'")
        return ()
    if quantize != "int8":
        raise ValueError(f"quantize must be 'int8' or None, not {quantize!r}")
    if chosen.name != "aoti":
        raise ValueError(
            f"quantize='int8' writes an AOTInductor package (.pt2), not {chosen.title}: "
            "oneDNN's int8 kernels are reached through Inductor"
        )
    batches = tuple(_as_tuple(batch) for batch in calibration or ())
    if not batches:
        raise ValueError(
            "quantize='int8' needs calibration=: a few batches of real inputs (a list of "
            "tensors, or of argument tuples), from which the activations' ranges are set"
        )
    return batches


def _kept_float(
    model: torch.nn.Module, quantize: str | None, keep_float: Sequence[str]
) -> tuple[str, ...]:
    """The names of the submodules that `keep_float`'s patterns (fnmatch, on the names of
    model.named_modules()) match; ValueError for a pattern that matches none, or without
    quantize."""
    if isinstance(keep_float, str):
        keep_float = (keep_float,)
    if keep_float and quantize is None:
        raise ValueError("keep_float= is for quantize='int8'")
    names = [name for name, _ in model.named_modules() if name]
    kept: list[str] = []
    for pattern in keep_float:
        matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ValueError(
                f"keep_float pattern {pattern!r} matches no submodule of the model (names as "
                f"model.named_modules() gives them, e.g. {names[:3]})"
            )
        kept += [name for name in matched if name not in kept]
    return tuple(kept)


def _static_batches(
    static_batches: Sequence[int],
    chosen: formats.Format,
    example: tuple[Any, ...],
    example_is_static: bool,
) -> tuple[int, ...]:
    """The batch sizes to compile alone as well, checked; ValueError if the format or the
    example's tensors (which must share a first dimension) cannot have them, or for the
    example's own batch where the package is compiled for it anyway."""
    batches = tuple(static_batches)
    if not batches:
        return ()
    if chosen.name != "aoti":
        raise ValueError(f"static_batches= is for AOTInductor packages (.pt2), not {chosen.title}")
    if not all(
        isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1 for batch in batches
    ):
        raise ValueError(f"static_batches must be batch sizes of 1 or more, not {batches}")
    if len(set(batches)) != len(batches):
        raise ValueError(f"static_batches lists a batch size twice: {batches}")
    sizes = _first_dimensions(example)
    if len(sizes) != 1 or any(isinstance(v, torch.Tensor) and not v.dim() for v in example):
        raise ValueError(
            "static_batches= needs forward's tensors to share a first dimension, the batch"
        )
    if example_is_static and sizes & set(batches):
        raise ValueError(
            f"static_batches lists the example's batch, {sizes.pop()}, for which the package "
            "is compiled already (an int8 package, or dynamic_batch=False)"
        )
    return batches


def _shapes(inputs: tuple[Any, ...]) -> list[Any]:
    return [list(value.shape) if isinstance(value, torch.Tensor) else None for value in inputs]


def _check_static_shapes(
    example: tuple[Any, ...], others: list[tuple[str, tuple[Any, ...]]]
) -> None:
    """An int8 package is compiled for the example's shapes (with a dynamic batch,
    AOTInductor's int8 code computes wrong results in torch 2.13: measured, tests/test_int8.py),
    so its calibration and check inputs must have them too."""
    for which, inputs in others:
        if _shapes(inputs) != _shapes(example):
            raise ValueError(
                f"an int8 package runs the example's shapes only, {_shapes(example)}, and "
                f"{which} has {_shapes(inputs)}: give calibration batches and check inputs "
                "of the example's batch size"
            )


def _check_accuracy(
    model: torch.nn.Module,
    native: Module,
    input_sets: list[tuple[Any, ...]],
    thresholds: tuple[float, float | None],
    progress: bool | None,
) -> accuracy.AccuracyReport:
    """The int8 model against the float model; ExportError if it misses a threshold (top-1:
    None, not checked)."""
    with stage(progress, f"int8: comparing with the float model on {len(input_sets)} inputs"):
        try:
            report = accuracy.measure(
                model, native, input_sets, native.optimization, thresholds[1] is not None
            )
        except _C.InferenceError as error:
            raise ExportError(
                f"the int8 model failed on an input: {str(error).splitlines()[0]}"
            ) from None
    if shows_progress(progress):
        print(f"int8: {report}", file=sys.stderr)
    shortfall = report.shortfall(*thresholds)
    if shortfall:
        raise ExportError(
            f"the int8 model is too far from the float model ({shortfall}), {report}. "
            "Calibrate on more batches of real inputs, export in float32, or lower "
            "min_cosine / min_top1_agreement if that is close enough"
        )
    return report


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
    format: Format | None = None,
    dynamic_batch: bool = True,
    progress: bool | None = None,
    strict: bool = True,
    quantize: Literal["int8"] | None = None,
    calibration: Iterable[Any] | None = None,
    keep_float: Sequence[str] = (),
    static_batches: Sequence[int] = (),
    min_cosine: float = 0.99,
    min_top1_agreement: float | None = None,
) -> Module:
    """Saves `model` as a file that carries its labels and preprocessing, proven to match.

    The format follows the suffix: ``.pt`` TorchScript, ``.pt2`` AOTInductor package,
    ``.onnx`` ONNX (or ``format=`` "torchscript", "aoti", "onnx"). TorchScript: method
    "script" compiles the Python code; "trace" records one run on `example_inputs`; "auto"
    scripts when it can and traces otherwise. AOTInductor: torch.export, then
    AOTInductor (aot_compile, package_aoti) with the weights frozen into the compiled code
    (tens of seconds; `progress` shows the seconds on stderr, by default when it is a
    terminal); labels, preprocessing, forward's input shapes and the Inductor options go into
    the package's metadata. ONNX:
    torch.onnx.export (torch.export, then ONNX Script); labels and preprocessing go into the
    model's metadata_props. Both take tensor arguments only, the first dimension dynamic
    unless dynamic_batch=False. The written file is then run (natively, or by ONNX Runtime)
    on `example_inputs`, on every entry of `check_inputs` (each a tensor or a tuple of
    arguments) and, with a dynamic batch, on the example grown by one row, and compared with
    the eager model (rtol/atol); a mismatch raises ExportError and leaves `path` untouched.
    A trace that matched on those inputs but that the tracer warned about (a tensor turned
    into a Python bool or number: data-dependent control flow, frozen) may still differ on
    others: strict=True (the default) refuses it with the warnings and what to do;
    strict=False writes it and says so in an ExportWarning. torch.export (``.pt2``, ``.onnx``)
    refuses such a model itself.

    quantize="int8" (``.pt2`` only; needs torchao, the ``int8`` extra): post-training static
    quantization (PT2E with the x86 Inductor quantizer), the activations' ranges set from the
    `calibration` batches (an iterable of inputs, each a tensor or a tuple of arguments: a few
    batches of real data), compiled by AOTInductor into oneDNN's int8 kernels. Instead of the
    rtol/atol check, the package is compared with the float model on the calibration batches and
    the inputs above: the cosine similarity of every output row and, for outputs shaped
    [batch, classes], the top-1 agreement; below `min_cosine` or `min_top1_agreement` raises
    ExportError with the figures. min_top1_agreement=None (the default) is 0.95 where the
    export has labels, and otherwise reported, not checked: an output without labels may be an
    embedding, whose largest component is no class. The returned Module's ``accuracy`` holds
    the figures. An int8 package runs the example's shapes only (compiled with a dynamic
    batch, torch 2.13's int8 code computes wrong results): calibration batches and check inputs
    must have them too.
    static_batches (``.pt2``): batch sizes to compile alone as well, in the same package: a
    call of one of them runs code specialised for it, any other the dynamic model (measure it:
    it pays most for convolutions at small batches). Each is checked against eager at its
    batch, and adds its compile time and its own copy of the weights. With int8, each is
    quantized on the calibration batches' rows regrouped to its batch: the package then runs
    those batch sizes and the example's.
    keep_float: submodules left in float32 in an int8 package, by name patterns (fnmatch, on
    ``model.named_modules()``'s names: ``"encoder.layer.?.output.dense"``), where their int8
    error costs more accuracy than their speed is worth.

    labels: a list of class names, a text file (one per line), or "imagenet".
    preprocess: "imagenet", or a dict with any of resize, crop, mean, std, color.
    Returns the exported file, loaded.
    """
    if method not in ("auto", "script", "trace"):
        raise ValueError(f"method must be 'auto', 'script' or 'trace', not {method!r}")
    path = Path(path)
    chosen = _format_of(path, format)
    model = model.eval()
    example = _as_tuple(example_inputs)

    metadata = _C.Metadata()
    metadata.labels = _resolve_labels(labels)
    if preprocess is not None:
        metadata.preprocess = make_preprocess(preprocess)
    if isinstance(example[0], torch.Tensor):
        metadata.input_shape = list(example[0].shape)
        metadata.input_dtype = str(example[0].dtype).removeprefix("torch.")
    metadata.tsnative_version = _C.__version__

    calibration_batches = _calibration_batches(quantize, calibration, chosen)
    kept_float = _kept_float(model, quantize, keep_float)
    static = _static_batches(
        static_batches, chosen, example, quantize is not None or not dynamic_batch
    )
    if not (-1.0 <= min_cosine <= 1.0 and 0.0 <= (min_top1_agreement or 0.0) <= 1.0):
        raise ValueError(
            f"min_cosine must lie in [-1, 1] and min_top1_agreement in [0, 1], not "
            f"{min_cosine} and {min_top1_agreement}"
        )
    if min_top1_agreement is None and metadata.labels:
        min_top1_agreement = DEFAULT_MIN_TOP1_AGREEMENT
    if chosen.torch_export and method != "auto":
        raise ValueError(
            f"method={method!r} is TorchScript's; an {chosen.title} export is {chosen.exporter}'s"
        )
    # Written beside `path` under a name that keeps its suffix (AOTInductor insists on .pt2).
    staging = path.with_name(path.name + ".partial" + chosen.suffix)
    _claim(staging, path)  # before any work: a folder that cannot be written is said at once
    input_sets = [("the example input", example)] + [
        (f"check input #{number + 1}", _as_tuple(inputs))
        for number, inputs in enumerate(check_inputs or ())
    ]
    if quantize is not None:
        dynamic_batch = False
        _check_static_shapes(
            example,
            input_sets[1:]
            + [(f"calibration batch #{n + 1}", b) for n, b in enumerate(calibration_batches)],
        )
    input_sets += [  # the example's own batch, if listed, is the example's input set
        (f"the example at batch {batch} (compiled for it alone)", at_batch(example, batch))
        for batch in static
        if batch not in _first_dimensions(example)
    ]
    options = ExportOptions(
        method,
        dynamic_batch,
        progress,
        path.name,
        quantize,
        calibration_batches,
        kept_float,
        static,
    )
    report = None
    try:
        try:
            written = chosen.write_module().write(model, example, str(staging), metadata, options)
        except WriteFailure as failure:
            if not chosen.torch_export:
                raise ExportError(str(failure)) from None
            if quantize is not None:  # TorchScript has no int8 level to go to
                raise ExportError(f"cannot export to {chosen.title} in int8: {failure}") from None
            raise ExportError(
                f"cannot export to {chosen.title}: {failure}; export to .pt (TorchScript) "
                "instead, which keeps Python control flow and takes any argument "
                "(method='script')"
            ) from None
        hint = written.hint
        grown = _grown_batch(example, static) if chosen.torch_export and dynamic_batch else None
        if grown is not None:
            rows = grown[0].shape[0]
            input_sets.append((f"the example grown to {rows} rows (the batch is dynamic)", grown))
            hint = (
                " The batch dimension was exported dynamic: give an example of 2 or more "
                "rows, or export with dynamic_batch=False."
            )
        native = load(staging)
        if quantize is None:
            _check_matches_eager(
                model, native, input_sets, written.how, hint, rtol, atol, flat=chosen.flat_outputs
            )
        else:
            tried = list(calibration_batches) + [inputs for _, inputs in input_sets]
            report = _check_accuracy(
                model, native, tried, (min_cosine, min_top1_agreement), progress
            )
        _check_one_label_per_class(native, example, metadata.labels)
        if written.untrusted and strict:
            raise ExportError(
                f"not written: {written.untrusted}. Make the model scriptable and export with "
                "method='script', or export to .pt2 (torch.export refuses what it cannot "
                "capture), or pass strict=False to write the trace anyway"
            )
        try:
            os.replace(staging, path)
        except OSError as error:
            raise ExportError(f"cannot write {str(path)!r}: {error.strerror}") from None
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    if written.untrusted:
        warnings.warn(
            f"{path} written with strict=False: {written.untrusted}", ExportWarning, stacklevel=2
        )
    if written.after is not None:
        written.after()
    exported = load(path)
    exported.accuracy = report
    return exported
