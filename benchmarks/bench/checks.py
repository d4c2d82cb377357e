"""A runner's output against eager PyTorch's: tolerances, top-5, cosine similarity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .common import FP32_RTOL, MIN_COSINE, REDUCED_RTOL


def flatten(value: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) output, in order; numpy arrays (ONNX Runtime) included."""
    if isinstance(value, torch.Tensor):
        return [value.detach()]
    if isinstance(value, np.ndarray):
        return [torch.from_numpy(value)]
    if isinstance(value, list | tuple):
        return [tensor for item in value for tensor in flatten(item)]
    if isinstance(value, dict):
        return [tensor for key in value for tensor in flatten(value[key])]
    return []


@dataclass
class Check:
    ok: bool
    max_abs: float
    tolerance: float
    top5_same: bool | None = None  # classifier only: the top-5 set of every row
    top1_same: bool | None = None
    cosine: float = 1.0
    detail: str = ""


def top5_margin(logits: torch.Tensor) -> float:
    """The smallest gap between the 5th and 6th logit over the rows: how close a flip is."""
    top = logits.topk(6, dim=-1).values
    return float((top[..., 4] - top[..., 5]).min())


def cosine_similarity(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """Of all floating outputs, flattened into one vector each."""
    pairs = [(g, w) for g, w in zip(got, want, strict=True) if w.is_floating_point()]
    if not pairs:
        return 1.0
    a = torch.cat([g.double().flatten() for g, _ in pairs])
    b = torch.cat([w.double().flatten() for _, w in pairs])
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def check_output(
    output: Any, reference: Any, *, kind: str, reduced_precision: bool, quantized: bool = False
) -> Check:
    """Compares a runner's output with eager PyTorch's. kind "top5": the classifier's top-5 set
    and top-1 must stay; "cosine": a reduced-precision run is held to cosine similarity
    >= MIN_COSINE instead of the max-abs tolerance; "max_abs": the tolerance alone. An int8 run
    (quantized) is held to cosine >= MIN_COSINE on every kind: random weights leave the
    classifier's top-5 gaps below 8-bit steps, so its top-5 is shown, not required."""
    got, want = flatten(output), flatten(reference)
    scale = max([1.0] + [float(w.abs().max()) for w in want if w.numel()])
    tolerance = (REDUCED_RTOL if reduced_precision else FP32_RTOL) * scale
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want, strict=False)):
        shapes = [tuple(t.shape) for t in got], [tuple(t.shape) for t in want]
        return Check(False, float("inf"), tolerance, detail=f"shapes differ: {shapes}")
    max_abs = max(
        float((g.float() - w.float()).abs().max()) for g, w in zip(got, want, strict=True)
    )
    check = Check(max_abs <= tolerance, max_abs, tolerance, cosine=cosine_similarity(got, want))
    if kind == "top5":
        got_top = got[0].float().softmax(-1).topk(5, dim=-1).indices
        want_top = want[0].float().softmax(-1).topk(5, dim=-1).indices
        check.top1_same = bool((got_top[..., 0] == want_top[..., 0]).all())
        check.top5_same = all(
            set(g.tolist()) == set(w.tolist()) for g, w in zip(got_top, want_top, strict=True)
        )
    if quantized or (kind == "cosine" and reduced_precision):
        check.ok = check.cosine >= MIN_COSINE
        if not check.ok:
            check.detail = f"cosine {check.cosine:.4f} < {MIN_COSINE}"
        elif check.top5_same is False:
            check.detail = f"top-5 changed (eager's 5th/6th logit gap {top5_margin(want[0]):.2g})"
        return check
    if kind == "top5":
        check.ok = check.top5_same and check.top1_same and (check.ok or reduced_precision)
        if not check.top5_same:
            check.detail = f"TOP-5 CHANGED (eager's 5th/6th logit gap {top5_margin(want[0]):.2g})"
        elif not check.top1_same:
            check.detail = "TOP-1 CHANGED"
    if not check.detail and max_abs > tolerance:
        check.detail = f"max|diff| {max_abs:.2g} > {tolerance:.2g}"
    return check


def describe_check(check: Check | None) -> str:
    if check is None:
        return "-"
    top = "top-5 same, " if check.top5_same else ""
    status = "ok" if check.ok else "FLAG"
    text = f"{status}: {top}max|diff| {check.max_abs:.1e}, cosine {check.cosine:.4f}"
    return f"{text} ({check.detail})" if check.detail else text
