"""AOTInductor packages (.pt2) in the latency tables: the eager model exported with
tsnative.export in float32, and, where the CPU computes bfloat16 natively, a bfloat16 copy of it
(weights, activations and inputs), each compiled once per model (batch dynamic)."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
import tsnative

from .common import first_line, log
from .measure import Runner
from .models import Case

# Each package is compiled once per model and run at every batch size: name -> path or error.
_compiled: dict[tuple[str, str], tuple[Path | None, str, float]] = {}


def _floating_as(dtype: torch.dtype, values: Any) -> Any:
    """Floating tensors in `dtype` (bfloat16 for the bf16 package's inputs, float32 for its
    outputs); the rest as they are."""
    return torch.utils._pytree.tree_map(
        lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t,
        values,
    )


def _package(case: Case, precision: str, work: Path) -> tuple[Path | None, str, float]:
    key = (case.model.name, precision)
    if key not in _compiled:
        path = work / f"{case.model.name}-{precision}.pt2"
        # From a batch of 2: exported from 1, the HF encoder specialises the batch somewhere
        # (export's check at one more row says so).
        model, inputs, tolerance = case.model.eager(), case.model.inputs(2), {}
        if precision == "bf16":
            # A bfloat16 copy, checked by export against its own eager run (what Inductor did);
            # the table checks it against float32 eager like every reduced-precision row.
            model = copy.deepcopy(model).to(torch.bfloat16)
            inputs, tolerance = _floating_as(torch.bfloat16, inputs), {"rtol": 5e-2, "atol": 5e-2}
        log(f"  exporting {path.name} (AOTInductor compiles for tens of seconds)")
        start = time.perf_counter()
        try:
            tsnative.export(model, inputs, path, progress=False, **tolerance)
        except Exception as error:
            _compiled[key] = (None, f"{type(error).__name__}: {first_line(str(error))}", 0.0)
        else:
            _compiled[key] = (path, "", time.perf_counter() - start)
    return _compiled[key]


def package_runners(
    case: Case, native_bf16: bool, work: Path
) -> tuple[list[Runner], list[tuple[str, str]], dict[str, Path]]:
    """A Runner per package that compiled, (name, why) for those that did not, and the
    float32 package (for ts-infer)."""
    if case.model.reset:
        return [], [("tsnative .pt2", "not measured: a stateful model (reset per call)")], {}
    runners, errors, paths = [], [], {}
    for precision in ("fp32", "bf16") if native_bf16 else ("fp32",):
        name = f"tsnative .pt2 {precision} (Python)"
        path, error, export_s = _package(case, precision, work)
        if path is None:
            errors.append((name, error))
            continue
        if precision == "fp32":  # ts-infer reads the float32 input files
            paths[precision] = path
        start = time.perf_counter_ns()
        module = tsnative.load(path)
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
                optimization=f"exported and compiled in {export_s:.0f} s; {module.optimization}",
            )
        )
    return runners, errors, paths
