"""How close a reduced-precision export (int8) comes to the float model it was made from: the
figures export() checks against its thresholds and reports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class AccuracyReport:
    """The exported model's outputs against the float (eager) model's on the inputs tried.

    cosine_min / cosine_mean: cosine similarity of each output row (every floating output, one
    row per batch item) to the float model's. top1_agreement: the share of rows whose largest
    score is at the same index, over the outputs shaped like class scores, [batch, classes];
    None if there is none.
    """

    inputs: int  # the input sets tried (calibration batches, the example, check inputs)
    rows: int  # the output rows compared
    cosine_min: float
    cosine_mean: float
    top1_agreement: float | None
    kernels: str = ""  # what the exported model runs on this CPU (its optimization line)
    top1_checked: bool = True

    def __str__(self) -> str:
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.2%}"
        if top1 and not self.top1_checked:
            top1 += " (not checked: no labels, so not taken for class scores)"
        return (
            f"against the float model on {self.inputs} input sets ({self.rows} rows): cosine "
            f"min {self.cosine_min:.5f}, mean {self.cosine_mean:.5f}{top1}"
        )

    def shortfall(self, min_cosine: float, min_top1_agreement: float | None) -> str:
        """Which threshold the figures miss, in a clause; "" if none (top-1: None, unchecked)."""
        missed = []
        if self.cosine_min < min_cosine:
            missed.append(f"cosine {self.cosine_min:.5f} < min_cosine {min_cosine}")
        if (
            min_top1_agreement is not None
            and self.top1_agreement is not None
            and self.top1_agreement < min_top1_agreement
        ):
            missed.append(
                f"top-1 agreement {self.top1_agreement:.2%} < min_top1_agreement "
                f"{min_top1_agreement:.2%}"
            )
        return "; ".join(missed)


def _rows(value: torch.Tensor) -> torch.Tensor:
    """A floating output as rows, one per batch item (a scalar or a vector: one row)."""
    value = value.detach().to(torch.float64)
    return value.reshape(1, -1) if value.dim() <= 1 else value.reshape(value.shape[0], -1)


def measure(
    reference: Callable[..., Any],
    exported: Callable[..., Any],
    input_sets: Sequence[tuple[Any, ...]],
    kernels: str = "",
    top1_checked: bool = True,
) -> AccuracyReport:
    """Runs both on every input set and compares their floating outputs (in order, however
    nested)."""
    cosines: list[torch.Tensor] = []
    agreements: list[torch.Tensor] = []
    for inputs in input_sets:
        with torch.no_grad():
            expected = torch.utils._pytree.tree_leaves(reference(*inputs))
        actual = torch.utils._pytree.tree_leaves(exported(*inputs))
        for want, got in zip(expected, actual, strict=True):
            if not (isinstance(want, torch.Tensor) and want.is_floating_point()):
                continue
            want_rows, got_rows = _rows(want), _rows(got)
            cosine = torch.nn.functional.cosine_similarity(got_rows, want_rows, dim=1)
            # Two rows of zeros (a ReLU's output) agree; the formula would call them 0 apart.
            zeros = (want_rows.abs().amax(dim=1) == 0) & (got_rows.abs().amax(dim=1) == 0)
            cosines.append(torch.where(zeros, 1.0, cosine))
            if want.dim() == 2 and want.shape[1] > 1:
                agreements.append(want.argmax(dim=1) == got.argmax(dim=1))
    if not cosines:
        raise ValueError("the model has no floating output to compare")
    cosine = torch.cat(cosines)
    agreement = torch.cat(agreements).double().mean().item() if agreements else None
    return AccuracyReport(
        len(input_sets),
        cosine.numel(),
        cosine.min().item(),
        cosine.mean().item(),
        agreement,
        kernels,
        top1_checked,
    )
