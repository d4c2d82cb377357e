"""`compare`: one eager model, every way tsnative can deploy it, on the same inputs: how close
each is to eager and how fast, and which is the fastest within tolerance."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import _C
from . import formats as formats_table
from .export import ExportError, export
from .module import OPTIMIZE_LEVELS, Module, PathLike, load

# Every level but bf16, which forces fast's bfloat16 on a CPU without it: asked for, not shown
# by default (emulated, it is slow, and says nothing a CPU with native bf16 would not).
LEVELS = tuple(level for level in OPTIMIZE_LEVELS if level != "bf16")
FORMATS = formats_table.NAMES  # what export() writes: "torchscript", "aoti", "onnx"
MIN_COSINE = 0.99  # a reduced-precision runner of a model that is not a classifier


@dataclass
class OutputDifference:
    """One output against eager's: the largest absolute difference, and that over eager's
    largest |value| (relative to the tensor's scale)."""

    max_abs: float
    max_rel: float


@dataclass
class Runner:
    """One way of running the model, as measured."""

    name: str  # "eager", "torchscript exact", "aoti", "onnx"
    format: str  # "eager", "torchscript", "aoti", "onnx"
    level: str  # the optimize level ("" for eager and ONNX)
    optimization: str = ""  # what the loaded model says it runs
    median_ms: float | None = None
    outputs: list[OutputDifference] = field(default_factory=list)
    topk_agreement: float | None = None  # classifiers: rows whose top-k set and top-1 match
    cosine: float | None = None  # of all outputs against eager's, flattened
    reduced_precision: bool = False  # ran in bfloat16: judged by top-k / cosine, not tolerance
    within_tolerance: bool | None = None
    error: str = ""  # why it could not be exported, loaded or run
    given: bool = False  # a file passed in, not one compare exported

    @property
    def max_abs(self) -> float | None:
        return max((o.max_abs for o in self.outputs), default=None)

    @property
    def max_rel(self) -> float | None:
        return max((o.max_rel for o in self.outputs), default=None)


@dataclass
class Comparison:
    """Every runner on the same inputs; printing it shows the table."""

    runners: list[Runner]
    k: int
    rtol: float
    atol: float
    rounds: int

    @property
    def failed_files(self) -> list[Runner]:
        """The runners of files given to compare (not exported by it) that could not be loaded
        or run: the user's file is at fault, not the format."""
        return [r for r in self.runners if r.error and r.given]

    @property
    def fastest(self) -> Runner | None:
        """The fastest runner within tolerance (eager excluded)."""
        fit = [r for r in self.runners if r.format != "eager" and r.within_tolerance]
        return min(fit, key=lambda r: r.median_ms or float("inf"), default=None)

    def __str__(self) -> str:
        eager = self.runners[0]
        head = (
            f"{'runner':<22}{'median ms':>10}{'speed-up':>9}{'max abs':>10}{'max rel':>10}"
            f"{f'top-{self.k}':>8}{'cosine':>9}  within tolerance"
        )
        lines = [head, "-" * len(head)]
        for runner in self.runners:
            if runner.error:
                lines.append(f"{runner.name:<22}  {runner.error}")
                continue
            speed = (
                f"{eager.median_ms / runner.median_ms:.2f}"
                if runner.median_ms and eager.median_ms and runner is not eager
                else "-"
            )
            verdict = "-" if runner.within_tolerance is None else _verdict(runner)
            lines.append(
                f"{runner.name:<22}{_fmt(runner.median_ms, '.2f'):>10}{speed:>9}"
                f"{_fmt(runner.max_abs, '.1e'):>10}{_fmt(runner.max_rel, '.1e'):>10}"
                f"{_fmt(runner.topk_agreement, '.0%'):>8}{_fmt(runner.cosine, '.4f'):>9}  {verdict}"
            )
        for runner in self.runners:
            if runner.optimization and not runner.error:
                lines.append(f"  {runner.name} runs {runner.optimization.split(' [')[0]}")
        best = self.fastest
        lines.append(
            f"fastest within tolerance: {best.name} ({best.median_ms:.2f} ms)"
            if best is not None and best.median_ms
            else "fastest within tolerance: none"
        )
        lines.append(
            f"(median of {self.rounds} interleaved calls each, speed-up over eager; float32 "
            f"runners within rtol {self.rtol:g}, atol {self.atol:g} x eager's largest |value|; "
            f"bfloat16 and int8 ones by top-{self.k} agreement on a classifier, else cosine >= "
            f"{MIN_COSINE})"
        )
        return "\n".join(lines)


def compare(
    model: torch.nn.Module,
    inputs: Any,
    *,
    formats: Sequence[str] = FORMATS,
    levels: Sequence[str] = LEVELS,
    files: dict[str, PathLike] | None = None,
    k: int = 5,
    rounds: int = 20,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    calibration: Sequence[Any] | None = None,
    static: bool = False,
) -> Comparison:
    """Runs `model` eagerly and as each deployment format on `inputs` and compares them.

    formats: which to try, "torchscript" (natively, at each optimize level of `levels`),
    "aoti" (an AOTInductor package, natively; compiling it takes tens of seconds) and "onnx"
    (ONNX Runtime). Each is exported from `model` into a temporary folder, or taken from
    `files` ({"torchscript": path, "aoti": path, "onnx": path}). Reports per runner the largest
    absolute and relative difference of its outputs against eager's, top-k agreement for a
    classifier (a 2-D floating first output), cosine similarity, and median latency over
    `rounds` interleaved calls after warm-up. Print the result for the table; `.fastest` is
    the fastest runner within tolerance. A format that cannot export or run the model is a row
    that says why (`.failed_files` lists the rows of files given in `files`). Inputs the eager
    model itself fails on are a ValueError.

    calibration: batches of real inputs shaped like `inputs` (as for export's): adds "aoti
    int8", an int8 package calibrated on them (needs "aoti" among `formats` and the int8
    extra), judged as reduced precision. Its accuracy at export is held to export's default
    thresholds: a package that misses them is a row that says by how much.

    static: adds "aoti static", a package compiled for the inputs' shapes alone
    (dynamic_batch=False, what static_batches= adds to a package): whether that pays for this
    model at this batch (needs "aoti" among `formats`).
    """
    for name in formats:
        formats_table.named(name)  # a ValueError naming the known ones
    if calibration is not None and "aoti" not in formats:
        raise ValueError("calibration= adds an int8 AOTInductor package: formats must hold 'aoti'")
    if static and "aoti" not in formats:
        raise ValueError("static=True adds an AOTInductor package: formats must hold 'aoti'")
    example = inputs if isinstance(inputs, tuple) else (inputs,)
    model = model.eval()
    try:
        with torch.inference_mode():
            reference = _tensors(model(*example))
    except Exception as error:  # the reference itself: nothing to compare with
        cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"the eager model fails on these inputs ({type(error).__name__}: {cause}); "
            "give inputs it takes (their dtype, shape and device)"
        ) from None
    runners = [Runner("eager", "eager", "")]
    calls: list[Callable[[], Any] | None] = [lambda: _eager(model, example)]
    # (format, variant: "" or what the runner's name adds, export options)
    exports: list[tuple[str, str, dict[str, Any]]] = [(name, "", {}) for name in formats]
    if static:
        exports.append(("aoti", "static", {"dynamic_batch": False}))
    if calibration is not None:
        exports.append(("aoti", "int8", {"quantize": "int8", "calibration": calibration}))
    with tempfile.TemporaryDirectory(prefix="tsnative-compare-") as scratch:
        for name, variant, options in exports:
            given = None if variant else (files or {}).get(name)
            suffix = formats_table.named(name).suffix
            stem = f"model-{variant}" if variant else "model"
            path = Path(given) if given is not None else Path(scratch) / f"{stem}{suffix}"
            error = "" if given is not None else _export(model, example, path, options)
            for level in levels if name == "torchscript" else ("none",):
                title = f"{name} {level}" if name == "torchscript" else name
                runner = Runner(
                    f"{title} {variant}" if variant else title,
                    name,
                    level if name == "torchscript" else "",
                    error=error,
                    given=given is not None,
                )
                runners.append(runner)
                calls.append(None if error else _loaded(runner, path, level, example))
        _time_interleaved(runners, calls, rounds)
    classifier = _is_classifier(reference, k)
    for runner, call in zip(runners, calls, strict=True):
        if call is None or runner.error or runner.format == "eager":
            continue
        _judge(runner, _tensors(call()), reference, k, classifier, rtol, atol)
    return Comparison(runners, k, rtol, atol, rounds)


def _eager(model: torch.nn.Module, example: tuple[Any, ...]) -> Any:
    with torch.inference_mode():
        return model(*example)


def _tensors(output: Any) -> list[torch.Tensor]:
    return [t for t in torch.utils._pytree.tree_leaves(output) if isinstance(t, torch.Tensor)]


def _export(
    model: torch.nn.Module, example: tuple[Any, ...], path: Path, options: dict[str, Any]
) -> str:
    try:
        export(model, example, path, **options)
    except (ExportError, ValueError) as error:
        return f"not exported: {str(error).splitlines()[0]}"
    except _C.ModelLoadError as error:  # the runtime for that format is missing
        return str(error).splitlines()[0]
    return ""


def _loaded(
    runner: Runner, path: Path, level: str, example: tuple[Any, ...]
) -> Callable[[], Any] | None:
    try:
        module: Module = load(path, optimize=level, warmup_inputs=example)
    except (_C.ModelLoadError, ValueError) as error:
        runner.error = str(error).splitlines()[0]
        return None
    runner.optimization = module.optimization
    summary = module.optimization.split(" [")[0]
    runner.reduced_precision = "bfloat16" in summary or "; int8: " in summary
    return lambda: module(*example)


def _time_interleaved(
    runners: list[Runner], calls: list[Callable[[], Any] | None], rounds: int
) -> None:
    """Warm-up, then rounds in which each runner is called once, in a fresh random order."""
    live = [(runner, call) for runner, call in zip(runners, calls, strict=True) if call]
    for runner, call in live:
        try:
            for _ in range(3):
                call()
        except _C.InferenceError as error:
            runner.error = f"failed: {str(error).splitlines()[0]}"
    live = [(runner, call) for runner, call in live if not runner.error]
    samples: dict[str, list[float]] = {runner.name: [] for runner, _ in live}
    shuffle = random.Random(0).shuffle
    for _ in range(max(rounds, 1)):
        shuffle(live)
        for runner, call in live:
            start = time.perf_counter()
            call()
            samples[runner.name].append((time.perf_counter() - start) * 1e3)
    for runner, _ in live:
        runner.median_ms = statistics.median(samples[runner.name])


def _is_classifier(reference: list[torch.Tensor], k: int) -> bool:
    first = reference[0] if reference else None
    return (
        first is not None and first.is_floating_point() and first.dim() == 2 and first.shape[1] > 1
    )


def _judge(
    runner: Runner,
    got: list[torch.Tensor],
    want: list[torch.Tensor],
    k: int,
    classifier: bool,
    rtol: float,
    atol: float,
) -> None:
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want, strict=False)):
        shapes = [tuple(t.shape) for t in got], [tuple(t.shape) for t in want]
        runner.error = f"outputs differ in number or shape from eager's: {shapes}"
        runner.within_tolerance = False
        return
    close = True
    for g, w in zip(got, want, strict=True):
        g, w = g.double(), w.double()
        scale = max(float(w.abs().max()), 1e-30) if w.numel() else 1.0
        diff = float((g - w).abs().max()) if w.numel() else 0.0
        runner.outputs.append(OutputDifference(diff, diff / scale))
        close = close and bool(torch.all((g - w).abs() <= atol * scale + rtol * w.abs()))
    floating = [(g, w) for g, w in zip(got, want, strict=True) if w.is_floating_point()]
    if floating:
        a = torch.cat([g.double().flatten() for g, _ in floating])
        b = torch.cat([w.double().flatten() for _, w in floating])
        runner.cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    if classifier:
        kk = min(k, want[0].shape[1])
        got_top, want_top = got[0].topk(kk, dim=1).indices, want[0].topk(kk, dim=1).indices
        same = [
            set(g.tolist()) == set(w.tolist()) and int(g[0]) == int(w[0])
            for g, w in zip(got_top, want_top, strict=True)
        ]
        runner.topk_agreement = sum(same) / len(same)
    if runner.reduced_precision:
        runner.within_tolerance = (
            runner.topk_agreement == 1.0 if classifier else (runner.cosine or 0.0) >= MIN_COSINE
        )
    else:
        runner.within_tolerance = close


def _verdict(runner: Runner) -> str:
    how = " (reduced precision: by top-k / cosine)" if runner.reduced_precision else ""
    return ("yes" if runner.within_tolerance else "NO") + how


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
