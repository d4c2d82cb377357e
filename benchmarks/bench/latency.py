"""Section 1, latency: every runner on one model and batch, interleaved; then ts-infer."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import tsnative

from .checks import Check, describe_check
from .common import LEVELS, Settings, first_line, log
from .machine import TsInfer, global_state
from .measure import OtherLoad, Runner, median_p90, other_load, run_rounds
from .models import Case, call_with_reset
from .packages import package_runners
from .peers import peer_runners


@dataclass
class Row:
    """One line of a latency table, as printed and as written to JSON."""

    runner: str
    peer: bool = False  # a competitor (eager, torch.jit, ONNX Runtime), not tsnative
    median_ms: float | None = None
    p90_ms: float | None = None
    samples: int = 0
    setup_ms: float | None = None
    first_call_ms: float | None = None
    ratio_best_peer: float | None = None
    ratio_ort: float | None = None
    check: Check | None = None
    optimization: str = ""
    error: str = ""
    reduced_precision: bool = False  # computes below float32 (tsnative fast, OpenVINO's bf16)
    quantized: bool = False  # int8 (tsnative's .pt2, ONNX Runtime's, OpenVINO's NNCF)


@dataclass
class LatencyResult:
    model: str
    batch: int
    about: str = ""
    rounds: int = 0
    best_peer: str = ""
    onnx_error: str = ""
    other_load_cores: float = 0.0
    state_changed_by_load: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)


def tsnative_runners(case: Case) -> tuple[list[Runner], list[Row]]:
    """One Module per optimize level, each warmed up on these inputs; failed loads as rows."""
    runners, failures = [], []
    for level in LEVELS:
        name = f"tsnative {level} (Python)"
        start = time.perf_counter_ns()
        try:
            # Chosen afresh in this run, not remembered from another (benchmarks/choice.py
            # measures the choice cache).
            module = tsnative.load(
                case.script_path, optimize=level, warmup_inputs=case.inputs, cache_dir=False
            )
        except Exception as error:
            failures.append(Row(name, error=f"{type(error).__name__}: {first_line(str(error))}"))
            log(f"  tsnative.load optimize={level} failed: {error}")
            continue
        setup_ms = (time.perf_counter_ns() - start) / 1e6
        forward = call_with_reset(
            case.model, module, lambda module=module: module.call(case.model.reset or "")
        )
        runners.append(
            Runner(
                name,
                lambda forward=forward: forward(*case.inputs),
                False,
                setup_ms,
                reduced_precision=level == "fast",
                optimization=module.optimization,
            )
        )
    return runners, failures


def ts_infer_rows(
    case: Case,
    ts_infer: TsInfer,
    typical_ms: float,
    settings: Settings,
    work: Path,
    packages: dict[str, Path],
) -> list[Row]:
    """ts-infer --repeat N at each level, and on each package: its own process, so not
    interleaved with the rest."""
    if case.model.ts_infer_reason:
        return [Row("ts-infer", error=f"not measured: {case.model.ts_infer_reason}")]
    input_args = []
    for index, tensor in enumerate(case.tensors):
        input_args += ["--input", str(work / f"input-{index}.pt")]
        torch.save(tensor, input_args[-1])
    repeat = int(settings.ts_infer_s * 1000 / max(typical_ms, 1e-3))
    repeat = min(max(repeat, settings.ts_infer_min_repeat), 5000)
    rows = []
    runs = [(f"ts-infer {level}", case.script_path, level) for level in LEVELS]
    runs += [(f"ts-infer .pt2 {precision}", path, "none") for precision, path in packages.items()]
    for name, model_path, level in runs:
        reduced, quantized = level == "fast" or name.endswith("bf16"), name.endswith("int8")
        output_path = work / f"output-{name.replace(' ', '-')}.pt"
        command = [str(ts_infer.path), str(model_path), *input_args, "--json"]
        command += ["--repeat", str(repeat), "--threads", str(settings.threads)]
        command += ["--save-output", str(output_path), "--optimize", level, "--cache-dir", ""]
        log(f"  {name} --repeat {repeat}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            rows.append(Row(name, error=first_line(done.stderr) or f"exit {done.returncode}"))
            continue
        report = json.loads(done.stdout.strip().splitlines()[-1])
        # written by ts-infer in this run; a tuple output needs the TorchScript type tags
        output = torch.load(output_path, weights_only=False)
        rows.append(
            Row(
                name,
                median_ms=report.get("forward_ms"),
                p90_ms=report.get("forward_p90_ms"),
                samples=repeat,
                setup_ms=report.get("load_ms"),
                first_call_ms=report.get("first_forward_ms"),
                check=case.check(output, reduced_precision=reduced, quantized=quantized),
                optimization=str(report.get("optimization", "")),
                quantized=quantized,
            )
        )
    return rows


def measure_latency(
    case: Case,
    ts_infer: TsInfer,
    settings: Settings,
    work: Path,
    native_bf16: bool,
    batches: tuple[int, ...],
) -> LatencyResult:
    result = LatencyResult(case.model.name, case.batch, case.model.about)
    log(f"{case.model.name} batch {case.batch}: exporting and loading")
    peers, result.onnx_error = peer_runners(case, settings, work)
    # The peers' (TorchScript) executors settle before tsnative loads anything, so a
    # process-wide switch flipped by a load cannot speed them up behind our back.
    for runner in peers:
        runner.warm_up(settings.warmup)
    before = global_state()
    ours, failures = tsnative_runners(case)
    packages, package_errors, package_paths = package_runners(case, native_bf16, work, batches)
    ours += packages
    failures += [Row(name, error=error) for name, error in package_errors]
    after = global_state()
    result.state_changed_by_load = {
        key: [before[key], after[key]] for key in before if before[key] != after[key]
    }
    for runner in ours:
        runner.warm_up(settings.warmup)
    runners = peers + ours
    log(f"{case.model.name} batch {case.batch}: {len(runners)} runners, interleaved rounds")
    with other_load() as rounds_load:
        result.rounds = run_rounds(runners, settings, seed=case.batch)
    for runner in runners:
        median, p90 = median_p90(runner.times_ms)
        check = case.check(
            runner.call(), reduced_precision=runner.reduced_precision, quantized=runner.quantized
        )
        result.rows.append(
            Row(
                runner.name,
                runner.peer,
                median,
                p90,
                len(runner.times_ms),
                runner.setup_ms,
                runner.first_call_ms,
                check=check,
                optimization=runner.optimization,
                reduced_precision=runner.reduced_precision,
                quantized=runner.quantized,
            )
        )
    result.rows += failures
    typical_ms = result.rows[0].median_ms or 1.0  # eager's: sizes ts-infer's --repeat
    with other_load() as ts_infer_load:
        result.rows += ts_infer_rows(case, ts_infer, typical_ms, settings, work, package_paths)
    result.other_load_cores = max(rounds_load.cores, ts_infer_load.cores)
    add_ratios(result)
    return result


def add_ratios(result: LatencyResult) -> None:
    """Each tsnative row against the fastest floating-point peer of its precision (a float32 or
    int8 row against the float32 peers; a reduced-precision one, fast, against every float
    peer) and against ONNX Runtime float32. The int8 peers are compared by the targets."""
    peers = [row for row in result.rows if row.peer and row.median_ms and not row.quantized]
    if not peers:
        return
    fp32_peers = [row for row in peers if not row.reduced_precision] or peers
    best_fp32 = min(fp32_peers, key=lambda row: row.median_ms or 0.0)
    best = min(peers, key=lambda row: row.median_ms or 0.0)
    result.best_peer = best_fp32.runner + ("" if best is best_fp32 else f"; any: {best.runner}")
    ort = next((row for row in peers if row.runner.startswith("onnxruntime")), None)
    for row in result.rows:
        if row.peer or not row.median_ms:
            continue
        # ts-infer's rows: by name
        reduced = row.reduced_precision or " fast" in row.runner or row.runner.endswith("bf16")
        against = best if reduced else best_fp32
        row.ratio_best_peer = row.median_ms / (against.median_ms or 1.0)
        if ort is not None and ort.median_ms:
            row.ratio_ort = row.median_ms / ort.median_ms


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_latency(result: LatencyResult, threads: int) -> None:
    print(
        f"\n{result.model} ({result.about}), batch {result.batch} ({threads} threads, "
        f"{result.rounds} interleaved rounds; best peer: {result.best_peer})"
    )
    header = (
        f"  {'runner':<26}{'median ms':>10}{'p90 ms':>9}{'x best':>8}{'x ORT':>7}"
        f"{'load ms':>9}{'1st ms':>9}  check vs eager"
    )
    print(header)
    print("  " + "-" * (len(header) + 20))
    for row in result.rows:
        if row.error:
            print(f"  {row.runner:<26}  error: {row.error}")
            continue
        print(
            f"  {row.runner:<26}{fmt(row.median_ms):>10}{fmt(row.p90_ms):>9}"
            f"{fmt(row.ratio_best_peer):>8}{fmt(row.ratio_ort):>7}{fmt(row.setup_ms, '.0f'):>9}"
            f"{fmt(row.first_call_ms, '.1f'):>9}  {describe_check(row.check)}"
        )
    if result.onnx_error:
        print(f"  ONNX Runtime: not measured, export failed: {result.onnx_error}")
    for row in result.rows:
        if row.optimization:
            print(f"  {row.runner}: {row.optimization}")
    load = OtherLoad(result.other_load_cores)
    print(f"  {load.describe()} (the busier of the rounds and the ts-infer runs)")
    if result.state_changed_by_load:
        print(f"  note: tsnative.load changed process-wide state: {result.state_changed_by_load}")
