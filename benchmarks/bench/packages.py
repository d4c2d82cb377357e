"""AOTInductor packages (.pt2) in the latency tables: the eager model exported with
tsnative.export in float32, and, where the CPU computes bfloat16 natively, a bfloat16 copy of it
(weights, activations and inputs), each compiled once per model (batch dynamic, and each batch
size measured compiled alone as well: static_batches, what a user serving those sizes exports,
faster where a specialised kernel pays); and, for the
models measured in int8, an int8 package calibrated on the case's calibration batches, one per
batch size (int8 packages have static shapes)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tsnative

from .common import first_line, log
from .measure import Runner
from .models import Case

# Each float package is compiled once per model and run at every batch size, an int8 one once
# per batch size: (model, precision, batch or 0) -> the package (or why not).
_compiled: dict[tuple[str, str, int], Package] = {}
PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class Package:
    path: Path | None  # None: the export failed
    error: str = ""
    export_s: float = 0.0
    accuracy: str = ""  # an int8 export's report against the float model


def _floating_as(dtype: torch.dtype, values: Any) -> Any:
    """Floating tensors in `dtype` (bfloat16 for the bf16 package's inputs, float32 for its
    outputs); the rest as they are."""
    return torch.utils._pytree.tree_map(
        lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t,
        values,
    )


def _export_arguments(
    case: Case, precision: str, batches: tuple[int, ...]
) -> tuple[Any, Any, dict[str, Any]]:
    """The model, example and tsnative.export options of one package."""
    # Float packages from a batch of 2: exported from 1, the HF encoder specialises the batch
    # somewhere (export's check at one more row says so).
    model, inputs = case.model.eager(), case.model.inputs(2)
    floats = {"static_batches": batches}
    if precision == "bf16":
        # A bfloat16 copy, checked by export against its own eager run (what Inductor did);
        # the table checks it against float32 eager like every reduced-precision row.
        model = copy.deepcopy(model).to(torch.bfloat16)
        return model, _floating_as(torch.bfloat16, inputs), {**floats, "rtol": 5e-2, "atol": 5e-2}
    if precision == "int8":
        # Cosine threshold off (top-1 is not checked without labels): the row's own check
        # holds it to cosine >= 0.99 against eager, and says by how much it missed, where a
        # refused export would only say that it did.
        options = {"quantize": "int8", "calibration": case.calibration(), "min_cosine": -1.0}
        return model, case.inputs, options
    return model, inputs, floats


def _package(case: Case, precision: str, work: Path, batches: tuple[int, ...]) -> Package:
    batch = case.batch if precision == "int8" else 0
    key = (case.model.name, precision, batch)
    if key not in _compiled:
        path = work / f"{case.model.name}-{precision}{f'-b{batch}' if batch else ''}.pt2"
        model, inputs, options = _export_arguments(case, precision, batches)
        log(f"  exporting {path.name} (AOTInductor compiles for tens of seconds)")
        start = time.perf_counter()
        try:
            exported = tsnative.export(model, inputs, path, progress=False, **options)
        except Exception as error:
            _compiled[key] = Package(None, f"{type(error).__name__}: {first_line(str(error))}")
        else:
            report = f"; {exported.accuracy}" if exported.accuracy else ""
            _compiled[key] = Package(path, "", time.perf_counter() - start, report)
    return _compiled[key]


def package_runners(
    case: Case, native_bf16: bool, work: Path, batches: tuple[int, ...]
) -> tuple[list[Runner], list[tuple[str, str]], dict[str, Path]]:
    """A Runner per package that compiled, (name, why) for those that did not, and the
    float32 and int8 packages (for ts-infer); float packages hold `batches` (the sizes the run
    measures) compiled alone as well."""
    int8 = case.model.int8
    if case.model.reset:
        return [], [("tsnative .pt2", "not measured: a stateful model (reset per call)")], {}
    runners, errors, paths = [], [], {}
    precisions = [p for p in PRECISIONS if (p != "bf16" or native_bf16) and (p != "int8" or int8)]
    for precision in precisions:
        name = f"tsnative .pt2 {precision} (Python)"
        package = _package(case, precision, work, batches)
        if package.path is None:
            errors.append((name, package.error))
            continue
        if precision != "bf16":  # ts-infer reads the float32 input files
            paths[precision] = package.path
        start = time.perf_counter_ns()
        module = tsnative.load(package.path)
        setup_ms = (time.perf_counter_ns() - start) / 1e6
        # bf16: inputs cast once, outside the timed call; outputs cast back to float32 in it.
        inputs = _floating_as(torch.bfloat16, case.inputs) if precision == "bf16" else case.inputs
        convert = (
            (lambda output: _floating_as(torch.float32, output))
            if precision == "bf16"
            else (lambda output: output)
        )
        runners.append(
            Runner(
                name,
                lambda module=module, inputs=inputs, convert=convert: convert(module(*inputs)),
                False,
                setup_ms,
                reduced_precision=precision == "bf16",
                quantized=precision == "int8",
                optimization=f"exported and compiled in {package.export_s:.0f} s; "
                f"{module.optimization}{package.accuracy}",
            )
        )
    return runners, errors, paths
