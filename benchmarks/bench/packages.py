"""AOTInductor packages (.pt2) in the latency tables: the eager model exported with
tsnative.export in float32, and, where the CPU computes bfloat16 natively, a bfloat16 copy of it
(weights and activations; float32 in and out), each compiled once per model (batch dynamic)."""

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


class Bfloat16(torch.nn.Module):
    """`model` in bfloat16 behind float32 inputs and outputs, as the fast level runs it."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).to(torch.bfloat16)

    def forward(self, *inputs: torch.Tensor) -> Any:
        cast = [x.to(torch.bfloat16) if x.is_floating_point() else x for x in inputs]
        output = self.model(*cast)
        return torch.utils._pytree.tree_map(
            lambda t: t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t,
            output,
        )


def _package(case: Case, precision: str, work: Path) -> tuple[Path | None, str, float]:
    key = (case.model.name, precision)
    if key not in _compiled:
        path = work / f"{case.model.name}-{precision}.pt2"
        model = case.model.eager()
        # bfloat16 against its own eager run: the package is checked for what Inductor did, and
        # the table checks it against float32 eager like every reduced-precision row.
        tolerance = {"rtol": 5e-2, "atol": 5e-2} if precision == "bf16" else {}
        if precision == "bf16":
            model = Bfloat16(model)
        log(f"  exporting {path.name} (AOTInductor compiles for tens of seconds)")
        start = time.perf_counter()
        try:
            tsnative.export(model, case.inputs, path, progress=False, **tolerance)
        except Exception as error:
            _compiled[key] = (None, f"{type(error).__name__}: {first_line(str(error))}", 0.0)
        else:
            _compiled[key] = (path, "", time.perf_counter() - start)
    return _compiled[key]


def package_runners(
    case: Case, native_bf16: bool, work: Path
) -> tuple[list[Runner], list[tuple[str, str]], dict[str, Path]]:
    """A Runner per package that compiled, (name, why) for those that did not, and the
    packages by precision (for ts-infer)."""
    if case.model.reset:
        return [], [("tsnative .pt2", "not measured: a stateful model (reset per call)")], {}
    runners, errors, paths = [], [], {}
    for precision in ("fp32", "bf16") if native_bf16 else ("fp32",):
        name = f"tsnative .pt2 {precision} (Python)"
        path, error, export_s = _package(case, precision, work)
        if path is None:
            errors.append((name, error))
            continue
        paths[precision] = path
        start = time.perf_counter_ns()
        module = tsnative.load(path)
        setup_ms = (time.perf_counter_ns() - start) / 1e6
        runners.append(
            Runner(
                name,
                lambda module=module: module(*case.inputs),
                False,
                setup_ms,
                reduced_precision=precision == "bf16",
                optimization=f"exported and compiled in {export_s:.0f} s; {module.optimization}",
            )
        )
    return runners, errors, paths
