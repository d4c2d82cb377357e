"""Section 5: the ratios the project aims for, met or missed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .accuracy import INT8, INT8_KEEP_FLOAT, AccuracyResult
from .common import NOISY_CORES
from .latency import LatencyResult, Row
from .models import CLASSIFIER

PEER_TARGET_MODELS = ("resnet18", "encoder", "hf_encoder")


@dataclass
class Target:
    name: str
    limit: float
    measured: float | None
    extra_ok: bool = True  # a condition besides the ratio (numerics kept)
    note: str = ""
    applies: bool = True  # False: set for another kind of CPU (shown, neither met nor missed)
    at_least: bool = False  # met when measured >= limit (an accuracy), not <= (a ratio)

    @property
    def status(self) -> str:
        if not self.applies:
            return "not applicable on this CPU"
        if self.measured is None:
            return "not measured"
        within = self.measured >= self.limit if self.at_least else self.measured <= self.limit
        return "met" if within and self.extra_ok else "missed"


def find_row(latency: list[LatencyResult], model: str, batch: int, runner: str) -> Row | None:
    for result in latency:
        if result.model == model and result.batch == batch:
            return next((row for row in result.rows if row.runner == runner), None)
    return None


def ratio_to(row: Row | None, peer: Row | None) -> float | None:
    if row is None or peer is None or not row.median_ms or not peer.median_ms:
        return None
    return row.median_ms / peer.median_ms


def best_fp32_peer(latency: list[LatencyResult], model: str, batch: int) -> Row | None:
    for result in latency:
        if result.model == model and result.batch == batch:
            peers = [
                r
                for r in result.rows
                if r.peer and r.median_ms and not r.reduced_precision and not r.quantized
            ]
            return min(peers, key=lambda r: r.median_ms or 0.0, default=None)
    return None


def numerics_ok(row: Row | None) -> bool:
    """exact: within the float32 tolerance; fast: top-5 unchanged (classifier) or cosine >= 0.99
    (encoders) -- what Check.ok says for each."""
    return row is not None and row.check is not None and row.check.ok


def peer_targets(latency: list[LatencyResult], native_bf16: bool) -> list[Target]:
    """Issue 12: exact <= 0.9x the best float32 peer; fast <= 0.9x OpenVINO at its default
    precision (bfloat16 on a CPU that computes it natively; else the best peer), numerics kept."""
    targets = []
    for model in PEER_TARGET_MODELS:
        for batch in (1, 8):
            present = any(r.model == model and r.batch == batch for r in latency)
            note = "" if present else f"{model} batch {batch} was not in this run"
            exact = find_row(latency, model, batch, "tsnative exact (Python)")
            fast = find_row(latency, model, batch, "tsnative fast (Python)")
            best = best_fp32_peer(latency, model, batch)
            targets.append(
                Target(
                    f"exact <= 0.9x best fp32 peer ({best.runner if best else '-'}), "
                    f"{model} b{batch}",
                    0.9,
                    ratio_to(exact, best),
                    extra_ok=numerics_ok(exact),
                    note=note,
                )
            )
            if native_bf16:
                peer = find_row(latency, model, batch, "openvino default")
                against = "OpenVINO default"
            else:
                peer = next((r for r in latency if r.model == model and r.batch == batch), None)
                peer = min(
                    (
                        x
                        for x in (peer.rows if peer else [])
                        if x.peer and x.median_ms and not x.quantized
                    ),
                    key=lambda x: x.median_ms or 0.0,
                    default=None,
                )
                against = f"best peer ({peer.runner if peer else '-'}; no native bf16)"
            targets.append(
                Target(
                    f"fast <= 0.9x {against}, {model} b{batch}",
                    0.9,
                    ratio_to(fast, peer),
                    extra_ok=numerics_ok(fast),
                    note=note,
                )
            )
    return targets


# Issue 27: (package, the row it is held against -- None: the best float32 peer --, limit, the
# CPU capability the target is set for).
PACKAGE_TARGETS = (
    ("fp32", "tsnative exact (Python)", 1.0, None),
    ("fp32", None, 0.9, None),
    ("bf16", "openvino default", 0.9, "native bfloat16"),
    ("int8", "openvino nncf int8", 0.9, "VNNI / AMX"),
    ("int8", None, 0.5, "VNNI / AMX"),
)


def package_targets(latency: list[LatencyResult], native_bf16: bool, vnni: bool) -> list[Target]:
    """Issue 27: .pt2 float32 <= 1.0x .pt exact and <= 0.9x the best float32 peer; .pt2
    bfloat16 <= 0.9x OpenVINO's default where the CPU has native bfloat16; int8 <= 0.9x
    OpenVINO's NNCF int8 and <= 0.5x the best float32 peer where it has VNNI or AMX. Numerics as
    each row's check (int8: cosine >= 0.99 against eager)."""
    has = {None: True, "native bfloat16": native_bf16, "VNNI / AMX": vnni}
    targets = []
    for model in PEER_TARGET_MODELS:
        for batch in (1, 8):
            present = any(r.model == model and r.batch == batch for r in latency)
            best = best_fp32_peer(latency, model, batch)
            for precision, against, limit, needs in PACKAGE_TARGETS:
                ours = find_row(latency, model, batch, f"tsnative .pt2 {precision} (Python)")
                peer = best if against is None else find_row(latency, model, batch, against)
                name = against or f"best fp32 peer ({best.runner if best else '-'})"
                note = "" if present else f"{model} batch {batch} was not in this run"
                targets.append(
                    Target(
                        f".pt2 {precision} <= {limit}x {name}, {model} b{batch}",
                        limit,
                        ratio_to(ours, peer),
                        extra_ok=numerics_ok(ours),
                        note=note or ("" if has[needs] else f"set for {needs}"),
                        applies=has[needs],
                    )
                )
    return targets


def accuracy_targets(accuracy: AccuracyResult | None) -> list[Target]:
    """Issue 27 on a real encoder: int8 embeddings' cosine to float32 >= 0.99 on every
    sentence, and every sentence's nearest neighbour the same as under float32; for the int8
    package and for the one that keeps the feed-forward outputs in float32."""
    targets = []
    for runner, label in ((INT8, "int8"), (INT8_KEEP_FLOAT, "int8 + keep_float")):
        row = None
        if accuracy is not None:
            row = next((r for r in accuracy.rows if r["runner"] == runner), None)
        measured = row is not None and "error" not in row
        note = "" if accuracy is None else accuracy.error or (row or {}).get("error", "")
        targets += [
            Target(
                f"{label} all-MiniLM-L6-v2: cosine to float32 >= 0.99, every sentence",
                0.99,
                row["cosine_min"] if measured else None,
                note=note,
                at_least=True,
            ),
            Target(
                f"{label} all-MiniLM-L6-v2: share of nearest neighbours as float32 >= 1",
                1.0,
                row["same_neighbours"] / accuracy.sentences if measured and accuracy else None,
                note=note,
                at_least=True,
            ),
        ]
    return targets


def issue4_targets(
    latency: list[LatencyResult],
    startup: dict[str, Any] | None,
    overhead: dict[str, Any] | None,
) -> list[Target]:
    """Issue 4: against ONNX Runtime on ResNet-18; ts-infer start-up; per-call overhead."""
    targets = []
    for level, limit in (("exact", 1.0), ("fast", 0.25)):
        for batch in (1, 8):
            row = find_row(latency, CLASSIFIER, batch, f"tsnative {level} (Python)")
            top5 = row is not None and row.check is not None and bool(row.check.top5_same)
            name = f"{level} <= {limit}x ORT fp32, {CLASSIFIER} b{batch}"
            if level == "fast":
                name += ", top-5 unchanged"
            targets.append(
                Target(
                    name,
                    limit,
                    row.ratio_ort if row else None,
                    extra_ok=top5 or level == "exact",
                    note="" if row else f"{CLASSIFIER} batch {batch} was not in this run",
                )
            )
    ts_row = None
    if startup:
        ts_row = next(r for r in startup["rows"] if r["name"].startswith("ts-infer (default"))
    targets.append(
        Target(
            "ts-infer first prediction <= 0.35x Python",
            0.35,
            ts_row["ratio_first_prediction"] if ts_row else None,
        )
    )
    targets.append(
        Target(
            "ts-infer peak RSS <= 0.7x Python", 0.7, ts_row["ratio_peak_rss"] if ts_row else None
        )
    )
    for name in ("tsnative.infer", "tsnative Module"):
        row = next((r for r in overhead["rows"] if r["name"] == name), None) if overhead else None
        targets.append(
            Target(
                f"{name} per-call overhead <= 1.2x torch.jit",
                1.2,
                row["ratio_jit"] if row else None,
            )
        )
    return targets


def evaluate_targets(
    latency: list[LatencyResult],
    startup: dict[str, Any] | None,
    overhead: dict[str, Any] | None,
    native_bf16: bool,
    vnni: bool,
    accuracy: AccuracyResult | None,
) -> dict[str, list[Target]]:
    return {
        "issue 12: against the strongest peers": peer_targets(latency, native_bf16),
        "issue 27: .pt2 packages and int8": package_targets(latency, native_bf16, vnni)
        + accuracy_targets(accuracy),
        "issue 4: against ONNX Runtime, start-up, overhead": issue4_targets(
            latency, startup, overhead
        ),
    }


def print_targets(groups: dict[str, list[Target]]) -> None:
    for title, targets in groups.items():
        print(f"\nTargets, {title}")
        for target in targets:
            unit = "" if target.at_least else "x"
            measured = "-" if target.measured is None else f"{target.measured:.3f}{unit}"
            gap = ""
            if target.status == "missed" and target.measured is not None:
                if target.measured > target.limit and not target.at_least:
                    gap = f" (by {target.measured / target.limit:.2f}x the limit)"
                if not target.extra_ok:
                    gap += " (numerics: top-5 changed / cosine < 0.99 / beyond tolerance)"
            note = f"  [{target.note}]" if target.note else ""
            print(f"  {target.name:<72}{measured:>7}  {target.status}{gap}{note}")


def noisy_measurements(
    latency: list[LatencyResult],
    startup: dict[str, Any] | None,
    overhead: dict[str, Any] | None,
    throughput: dict[str, Any] | None,
) -> list[str]:
    """The measurements during which other processes were busy."""
    loads = {f"{r.model} batch {r.batch}": r.other_load_cores for r in latency}
    if startup:
        loads["start-up"] = startup["other_load_cores"]
    if overhead:
        loads["overhead"] = overhead["other_load_cores"]
    for row in throughput["rows"] if throughput else []:
        loads[f"throughput x{row['python_threads']}"] = row["other_load_cores"]
    return [name for name, cores in loads.items() if cores > NOISY_CORES]
