"""tsnative's own benchmark: latency, start-up, per-call overhead and thread scaling.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/run.py``; ``--quick`` for a short
smoke run). Tables go to stdout, progress to stderr, everything to a JSON file
(``--out``, default build/bench/results.json). See benchmarks/README.md for how to read it.

Sections:
1. latency   eager PyTorch, Python torch.jit.load, ONNX Runtime and tsnative at each optimize
             level, in one process, interleaved round-robin after warm-up; then ts-infer at
             each level (one process per level, its own --repeat).
2. startup   ts-infer time to first prediction and peak RSS against a minimal Python script.
3. overhead  per-call cost of tsnative.infer / Module on a tiny model against torch.jit.
4. threads   images/s with 1, 2 and 4 Python threads calling one Module.
5. targets   the ratios the project aims for (issue 4), met or missed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tsnative

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("resnet18", "transformer", "lstm")  # names in the parity suite's zoo (tests/models.py)
CLASSIFIER = "resnet18"  # top-5 is checked on its softmax; the others by max abs difference
LEVELS = ("none", "exact", "fast")
FP32_RTOL = 1e-4  # max |runner - eager| <= FP32_RTOL * max(1, max |eager|)
REDUCED_RTOL = 5e-2  # the same for "fast" (reduced precision), whose top-5 must still match
NOISY_CORES = 0.25  # other processes busier than this while we measure: the numbers are suspect
STARTED = time.perf_counter()


# --- set-up -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure; --quick shrinks every budget."""

    threads: int
    warmup: int  # untimed calls per runner before the rounds
    time_box_s: float  # per model and batch: rounds stop after this (once min_rounds are done)
    min_rounds: int
    ts_infer_s: float  # --repeat is chosen so that one ts-infer run takes about this long
    ts_infer_min_repeat: int
    startup_reps: int
    overhead_block: int  # calls per timed block
    overhead_time_s: float
    overhead_min_rounds: int
    throughput_s: float  # per thread count
    # ONNX Runtime's threads busy-wait after each run by default; interleaved, that steals
    # the cores from whichever runner comes next (p90 of a 0.5 ms model went to 150 ms).
    ort_spinning: bool = False

    @staticmethod
    def make(quick: bool, threads: int, ort_spinning: bool) -> Settings:
        budget: dict[str, Any] = {
            "warmup": 10,
            "time_box_s": 12.0,
            "min_rounds": 20,
            "ts_infer_s": 3.0,
            "ts_infer_min_repeat": 20,
            "startup_reps": 5,
            "overhead_block": 2000,
            "overhead_time_s": 6.0,
            "overhead_min_rounds": 10,
            "throughput_s": 5.0,
        }
        if quick:
            budget.update(
                warmup=3,
                time_box_s=1.5,
                min_rounds=5,
                ts_infer_s=0.5,
                ts_infer_min_repeat=5,
                startup_reps=2,
                overhead_block=500,
                overhead_time_s=1.0,
                overhead_min_rounds=3,
                throughput_s=1.0,
            )
        return Settings(threads=threads, ort_spinning=ort_spinning, **budget)


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def zoo() -> Any:
    """The parity suite's model zoo (tests/models.py), which imports examples/resnet18.py."""
    for folder in ("examples", "tests"):
        if str(ROOT / folder) not in sys.path:
            sys.path.insert(0, str(ROOT / folder))
    import models

    return models


def ts_infer_path() -> Path:
    beside = Path(sys.executable).parent / "ts-infer"
    if beside.exists():
        return beside
    found = shutil.which("ts-infer")
    if found is None:
        raise SystemExit("ts-infer not found beside the Python executable or on PATH")
    return Path(found)


@dataclass(frozen=True)
class TsInfer:
    """The ts-infer binary and the optimize level it uses without --optimize."""

    path: Path
    default_level: str


def find_ts_infer() -> TsInfer:
    binary = ts_infer_path()
    text = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    default = re.search(r"--optimize\s+\S*=(\w+)", text)
    return TsInfer(path=binary, default_level=default.group(1) if default else "none")


def global_state() -> dict[str, Any]:
    """Process-wide switches a load could change (they would also change the peers' runs)."""
    probes: dict[str, Callable[[], Any]] = {
        "intra_op_threads": torch.get_num_threads,
        "onednn_fusion": torch.jit.onednn_fusion_enabled,
        "mkldnn": lambda: torch.backends.mkldnn.enabled,
        "graph_executor_optimize": torch._C._get_graph_executor_optimize,
        "texpr_fuser": torch._C._jit_texpr_fuser_enabled,
        "fuse_on_cpu": torch._C._jit_can_fuse_on_cpu,
    }
    state = {}
    for name, probe in probes.items():
        try:
            state[name] = probe()
        except Exception as error:  # a private probe that this torch lacks
            state[name] = f"n/a ({type(error).__name__})"
    return state


def machine_info(settings: Settings) -> dict[str, Any]:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo.read().split("\n\n")[0].splitlines():  # the first CPU
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    cpu = fields.get("model name", platform.processor() or "unknown")
    flags = set(fields.get("flags", "").split())
    import onnxruntime

    try:
        import openvino

        openvino_version = openvino.__version__.split("-")[0]
    except ImportError:
        openvino_version = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "isa": sorted(f for f in flags if f.startswith(("avx", "amx")) or f == "fma"),
        "torch": torch.__version__,
        "tsnative": tsnative.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version,
        "python": platform.python_version(),
        "threads": settings.threads,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# --- outputs and checks -----------------------------------------------------------------------


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
    detail: str = ""


def top5_margin(logits: torch.Tensor) -> float:
    """The smallest gap between the 5th and 6th logit over the rows: how close a flip is."""
    top = logits.topk(6, dim=-1).values
    return float((top[..., 4] - top[..., 5]).min())


def check_output(
    output: Any, reference: Any, *, classifier: bool, reduced_precision: bool
) -> Check:
    """Compares a runner's output with eager PyTorch's."""
    got, want = flatten(output), flatten(reference)
    scale = max([1.0] + [float(w.abs().max()) for w in want if w.numel()])
    tolerance = (REDUCED_RTOL if reduced_precision else FP32_RTOL) * scale
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want, strict=False)):
        shapes = [tuple(t.shape) for t in got], [tuple(t.shape) for t in want]
        return Check(False, float("inf"), tolerance, detail=f"shapes differ: {shapes}")
    max_abs = max(
        float((g.float() - w.float()).abs().max()) for g, w in zip(got, want, strict=True)
    )
    check = Check(max_abs <= tolerance, max_abs, tolerance)
    if classifier:
        got_top = got[0].float().softmax(-1).topk(5, dim=-1).indices
        want_top = want[0].float().softmax(-1).topk(5, dim=-1).indices
        check.top1_same = bool((got_top[..., 0] == want_top[..., 0]).all())
        check.top5_same = all(
            set(g.tolist()) == set(w.tolist()) for g, w in zip(got_top, want_top, strict=True)
        )
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
    top = "" if check.top5_same is None else "top-5 same, "
    status = "ok" if check.ok else "FLAG"
    text = f"{status}: {top}max|diff| {check.max_abs:.1e}"
    return f"{text} ({check.detail})" if check.detail else text


# --- statistics -------------------------------------------------------------------------------


def median_p90(samples_ms: Sequence[float]) -> tuple[float, float]:
    if len(samples_ms) == 1:
        return samples_ms[0], samples_ms[0]
    p90 = statistics.quantiles(samples_ms, n=10, method="inclusive")[-1]
    return statistics.median(samples_ms), p90


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    busy = ticks[0] + ticks[1] + ticks[2] + sum(ticks[5:8])  # user nice system irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class OtherLoad:
    """How many cores other processes kept busy while we measured (0: a quiet machine)."""

    cores: float = 0.0

    def describe(self) -> str:
        text = f"other processes (and steal) used {self.cores:.2f} cores meanwhile"
        return text + (" -- NOISY, rerun on a quiet machine" if self.noisy else "")

    @property
    def noisy(self) -> bool:
        return self.cores > NOISY_CORES


@contextlib.contextmanager
def other_load() -> Iterator[OtherLoad]:
    load = OtherLoad()
    wall, busy, own = time.perf_counter(), busy_cpu_s(), own_cpu_s()
    try:
        yield load
    finally:
        elapsed = time.perf_counter() - wall
        others = (busy_cpu_s() - busy) - (own_cpu_s() - own)
        load.cores = max(0.0, others / max(elapsed, 1e-9))


def wait_for_quiet(max_wait_s: float) -> None:
    """Waits (at most max_wait_s) until other processes leave the cores alone for a second."""
    deadline = time.perf_counter() + max_wait_s
    while time.perf_counter() < deadline:
        with other_load() as load:
            time.sleep(1.0)
        if not load.noisy:
            return
        log(f"waiting for a quiet machine: other processes use {load.cores:.2f} cores")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# --- 1. latency -------------------------------------------------------------------------------


@dataclass
class Runner:
    """One way of running the model: a call with its inputs bound, and its timings."""

    name: str
    call: Callable[[], Any]
    peer: bool  # not tsnative: a competitor the ratios are taken against
    setup_ms: float
    reduced_precision: bool = False
    optimization: str = ""
    first_call_ms: float | None = None
    times_ms: list[float] = field(default_factory=list)

    def timed(self) -> Any:
        start = time.perf_counter_ns()
        output = self.call()
        self.times_ms.append((time.perf_counter_ns() - start) / 1e6)
        return output

    def warm_up(self, calls: int) -> None:
        start = time.perf_counter_ns()
        self.call()
        self.first_call_ms = (time.perf_counter_ns() - start) / 1e6
        for _ in range(calls - 1):
            self.call()


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


@dataclass
class LatencyResult:
    model: str
    batch: int
    rounds: int = 0
    best_peer: str = ""
    onnx_error: str = ""
    other_load_cores: float = 0.0
    state_changed_by_load: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)


def make_input(model: str, batch: int) -> tuple[torch.Tensor, ...]:
    """The zoo's input shape at this batch size, filled with seeded normal noise."""
    (example,) = zoo().ZOO[model].cases["b1"]()
    generator = torch.Generator().manual_seed(1000 + batch)
    return (torch.randn(batch, *example.shape[1:], generator=generator),)


def save_torchscript(model: str, directory: Path) -> Path:
    path = directory / f"{model}.pt"
    torch.jit.save(torch.jit.script(zoo().build(model)), str(path))
    return path


@dataclass
class Case:
    """One latency table: a model at a batch size, its inputs and eager's output."""

    model: str
    batch: int
    script_path: Path
    inputs: tuple[torch.Tensor, ...]
    eager: torch.nn.Module
    reference: list[torch.Tensor]

    @staticmethod
    def make(model: str, batch: int, script_path: Path) -> Case:
        inputs = make_input(model, batch)
        eager = zoo().build(model)
        with torch.inference_mode():
            reference = [tensor.clone() for tensor in flatten(eager(*inputs))]
        return Case(model, batch, script_path, inputs, eager, reference)

    def check(self, output: Any, *, reduced_precision: bool) -> Check:
        return check_output(
            output,
            self.reference,
            classifier=self.model == CLASSIFIER,
            reduced_precision=reduced_precision,
        )


def export_onnx(case: Case, path: Path) -> None:
    """The TorchScript-based exporter at opset 17, static shapes (one file per batch size)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            case.eager,
            case.inputs,
            str(path),
            dynamo=False,
            opset_version=17,
            do_constant_folding=True,
        )


def ort_runner(case: Case, path: Path, settings: Settings) -> Runner:
    import onnxruntime as ort

    start = time.perf_counter_ns()
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spinning = "1" if settings.ort_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {
        arg.name: tensor.numpy()
        for arg, tensor in zip(session.get_inputs(), case.inputs, strict=True)
    }
    setup_ms = (time.perf_counter_ns() - start) / 1e6
    return Runner("onnxruntime fp32", lambda: session.run(None, feed), True, setup_ms)


def openvino_runners(case: Case, path: Path, settings: Settings) -> list[Runner]:
    """OpenVINO's CPU plugin on the same ONNX file: in float32, and at its default precision
    (bfloat16 where the CPU computes it natively: AVX512-BF16 or AMX), latency mode."""
    import openvino as ov

    runners = []
    for name, hint in (("openvino fp32", "f32"), ("openvino default", None)):
        start = time.perf_counter_ns()
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": settings.threads, "PERFORMANCE_HINT": "LATENCY"}
        if hint is not None:
            config["INFERENCE_PRECISION_HINT"] = hint
        compiled = core.compile_model(str(path), "CPU", config)
        element_type = compiled.get_property("INFERENCE_PRECISION_HINT")
        precision = element_type.to_string() if hasattr(element_type, "to_string") else "?"
        request = compiled.create_infer_request()
        feed = [tensor.numpy() for tensor in case.inputs]
        setup_ms = (time.perf_counter_ns() - start) / 1e6
        reduced = precision != "f32"
        runners.append(
            Runner(
                name,
                lambda request=request, feed=feed: list(request.infer(feed).values()),
                True,
                setup_ms,
                reduced_precision=reduced,
                optimization=f"inference precision {precision}",
            )
        )
    return runners


def peer_runners(case: Case, settings: Settings, work: Path) -> tuple[list[Runner], str]:
    """Eager, torch.jit.load and ONNX Runtime; and why ONNX failed, if it did."""
    eager, inputs = case.eager, case.inputs

    def run_eager() -> Any:
        with torch.inference_mode():
            return eager(*inputs)

    start = time.perf_counter_ns()
    scripted = torch.jit.load(str(case.script_path))
    jit_setup_ms = (time.perf_counter_ns() - start) / 1e6

    def run_jit() -> Any:
        with torch.no_grad():
            return scripted(*inputs)

    runners = [
        Runner("eager (inference_mode)", run_eager, True, 0.0),
        Runner("torch.jit.load (no_grad)", run_jit, True, jit_setup_ms),
    ]
    try:
        onnx_path = work / f"{case.model}-b{case.batch}.onnx"
        export_onnx(case, onnx_path)
        runners.append(ort_runner(case, onnx_path, settings))
    except Exception as error:
        reason = f"{type(error).__name__}: {first_line(str(error))}"
        log(f"  ONNX export / session failed for {case.model}: {reason}")
        return runners, reason
    try:
        runners += openvino_runners(case, onnx_path, settings)
    except Exception as error:
        log(f"  OpenVINO failed for {case.model}: {type(error).__name__}: {first_line(str(error))}")
    return runners, ""


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""


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
        runners.append(
            Runner(
                name,
                lambda module=module: module(*case.inputs),
                False,
                setup_ms,
                reduced_precision=level == "fast",
                optimization=module.optimization,
            )
        )
    return runners, failures


def run_rounds(runners: list[Runner], settings: Settings, seed: int) -> int:
    """Round-robin: every round calls each runner once, in a fresh random order."""
    order = list(runners)
    shuffle = random.Random(seed).shuffle
    rounds = 0
    deadline = time.perf_counter() + settings.time_box_s
    with gc_paused():
        while rounds < settings.min_rounds or time.perf_counter() < deadline:
            shuffle(order)
            for runner in order:
                runner.timed()
            rounds += 1
    return rounds


def ts_infer_rows(
    case: Case,
    ts_infer: TsInfer,
    typical_ms: float,
    settings: Settings,
    work: Path,
) -> list[Row]:
    """ts-infer --repeat N at each level: its own process, so not interleaved with the rest."""
    input_args = []
    for index, tensor in enumerate(case.inputs):
        input_args += ["--input", str(work / f"input-{index}.pt")]
        torch.save(tensor, input_args[-1])
    repeat = int(settings.ts_infer_s * 1000 / max(typical_ms, 1e-3))
    repeat = min(max(repeat, settings.ts_infer_min_repeat), 5000)
    rows = []
    for level in LEVELS:
        name = f"ts-infer {level}"
        output_path = work / f"output-{level}.pt"
        command = [str(ts_infer.path), str(case.script_path), *input_args, "--json"]
        command += ["--repeat", str(repeat), "--threads", str(settings.threads)]
        command += ["--save-output", str(output_path), "--optimize", level, "--cache-dir", ""]
        log(f"  {name} --repeat {repeat}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            rows.append(Row(name, error=first_line(done.stderr) or f"exit {done.returncode}"))
            continue
        report = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(
            Row(
                name,
                median_ms=report.get("forward_ms"),
                p90_ms=report.get("forward_p90_ms"),
                samples=repeat,
                setup_ms=report.get("load_ms"),
                first_call_ms=report.get("first_forward_ms"),
                check=case.check(torch.load(output_path), reduced_precision=level == "fast"),
                optimization=str(report.get("optimization", "")),
            )
        )
    return rows


def measure_latency(case: Case, ts_infer: TsInfer, settings: Settings, work: Path) -> LatencyResult:
    result = LatencyResult(case.model, case.batch)
    log(f"{case.model} batch {case.batch}: exporting and loading")
    peers, result.onnx_error = peer_runners(case, settings, work)
    # The peers' (TorchScript) executors settle before tsnative loads anything, so a
    # process-wide switch flipped by a load cannot speed them up behind our back.
    for runner in peers:
        runner.warm_up(settings.warmup)
    before = global_state()
    ours, failures = tsnative_runners(case)
    after = global_state()
    result.state_changed_by_load = {
        key: [before[key], after[key]] for key in before if before[key] != after[key]
    }
    for runner in ours:
        runner.warm_up(settings.warmup)
    runners = peers + ours
    log(f"{case.model} batch {case.batch}: {len(runners)} runners, interleaved rounds")
    with other_load() as rounds_load:
        result.rounds = run_rounds(runners, settings, seed=case.batch)
    for runner in runners:
        median, p90 = median_p90(runner.times_ms)
        check = case.check(runner.call(), reduced_precision=runner.reduced_precision)
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
            )
        )
    result.rows += failures
    typical_ms = result.rows[0].median_ms or 1.0  # eager's: sizes ts-infer's --repeat
    with other_load() as ts_infer_load:
        result.rows += ts_infer_rows(case, ts_infer, typical_ms, settings, work)
    result.other_load_cores = max(rounds_load.cores, ts_infer_load.cores)
    add_ratios(result)
    return result


def add_ratios(result: LatencyResult) -> None:
    """Each tsnative row against the fastest peer of its precision (a float32 row against the
    float32 peers; a reduced-precision one, fast, against every peer) and against ONNX
    Runtime."""
    peers = [row for row in result.rows if row.peer and row.median_ms]
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
        reduced = row.reduced_precision or " fast" in row.runner  # ts-infer's rows: by name
        against = best if reduced else best_fp32
        row.ratio_best_peer = row.median_ms / (against.median_ms or 1.0)
        if ort is not None and ort.median_ms:
            row.ratio_ort = row.median_ms / ort.median_ms


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_latency(result: LatencyResult, threads: int) -> None:
    print(
        f"\n{result.model}, batch {result.batch} ({threads} threads, {result.rounds} interleaved "
        f"rounds; best peer: {result.best_peer})"
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


# --- 2. start-up ------------------------------------------------------------------------------

PYTHON_SCRIPT = """
import sys, torch
torch.set_num_threads(int(sys.argv[3]))
model = torch.jit.load(sys.argv[1])
x = torch.load(sys.argv[2])
with torch.no_grad():
    y = model(x)
print(y.softmax(-1).topk(5).indices.tolist(), flush=True)
"""


@dataclass
class ProcessRun:
    first_output_ms: float  # process start to its first line on stdout (the prediction)
    exit_ms: float  # process start to exit
    peak_rss_kib: int
    stdout: str


# Linux charges a process that exec()s with the peak RSS of the memory image it replaced: a
# child spawned straight from this (torch-sized) process would report at least our own peak.
# So a small Python without torch spawns the command, times it and reports its wait4 rusage.
SPAWNER = """
import json, os, sys, time
read_end, write_end = os.pipe()
actions = [(os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_CLOSE, read_end)]
start = time.perf_counter_ns()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=actions)
os.close(write_end)
chunks, first_line = [], None
while chunk := os.read(read_end, 65536):
    chunks.append(chunk)
    if first_line is None and b"\\n" in chunk:
        first_line = time.perf_counter_ns()
_, status, usage = os.wait4(pid, 0)
end = time.perf_counter_ns()
print(json.dumps({
    "first_line_ms": ((first_line or end) - start) / 1e6,
    "exit_ms": (end - start) / 1e6,
    "peak_rss_kib": usage.ru_maxrss,
    "exit_code": os.waitstatus_to_exitcode(status),
    "stdout": b"".join(chunks).decode(errors="replace"),
}))
"""


def run_process(command: list[str]) -> ProcessRun:
    """Runs a command in a fresh process: time to its first stdout line, to exit; peak RSS."""
    spawner = [sys.executable, "-S", "-c", SPAWNER, *command]
    done = subprocess.run(spawner, capture_output=True, text=True, check=False)
    report = json.loads(done.stdout) if done.returncode == 0 else {"exit_code": -1}
    if report["exit_code"] != 0:
        message = done.stderr.strip().splitlines()[-1:]
        raise RuntimeError(f"{Path(command[0]).name} failed: {message}")
    return ProcessRun(
        report["first_line_ms"], report["exit_ms"], report["peak_rss_kib"], report["stdout"]
    )


@dataclass
class StartupRow:
    name: str
    command: list[str]
    first_output_ms: float = 0.0
    exit_ms: float = 0.0
    peak_rss_mib: float = 0.0
    top5: Any = None
    runs: list[ProcessRun] = field(default_factory=list)


def measure_startup(
    script_path: Path, ts_infer: TsInfer, settings: Settings, work: Path
) -> dict[str, Any]:
    """Fresh processes, interleaved: the Python script and ts-infer (default and each level)."""
    input_path = work / "startup-input.pt"
    torch.save(make_input(CLASSIFIER, 1)[0], input_path)
    threads = str(settings.threads)
    base = [str(ts_infer.path), str(script_path), "--input", str(input_path), "--json"]
    rows = [
        StartupRow(
            "python torch.jit.load",
            [sys.executable, "-c", PYTHON_SCRIPT, str(script_path), str(input_path), threads],
        ),
        StartupRow("ts-infer (default flags)", [*base, "--threads", threads]),
    ]
    for level in LEVELS:
        if level == ts_infer.default_level:
            rows[-1].name = f"ts-infer (default: {level})"
            continue
        rows.append(
            StartupRow(
                f"ts-infer --optimize {level}", [*base, "--threads", threads, "--optimize", level]
            )
        )
    for row in rows:  # untimed: page cache, dynamic loader caches
        run_process(row.command)
    shuffle = random.Random(2).shuffle
    order = list(rows)
    with other_load() as load:
        for repetition in range(settings.startup_reps):
            log(f"start-up: repetition {repetition + 1}/{settings.startup_reps}")
            shuffle(order)
            for row in order:
                row.runs.append(run_process(row.command))
    for row in rows:
        row.first_output_ms = statistics.median(run.first_output_ms for run in row.runs)
        row.exit_ms = statistics.median(run.exit_ms for run in row.runs)
        row.peak_rss_mib = statistics.median(run.peak_rss_kib for run in row.runs) / 1024
        line = row.runs[-1].stdout.strip().splitlines()[-1]
        row.top5 = json.loads(line).get("indices") if line.startswith("{") else json.loads(line)
    python = rows[0]
    result = {
        "model": f"{CLASSIFIER} batch 1 (TorchScript file, input from torch.save)",
        "repetitions": settings.startup_reps,
        "rows": [
            {
                "name": row.name,
                "command": row.command if row is not python else ["python", "-c", "<script>"],
                "first_prediction_ms": row.first_output_ms,
                "exit_ms": row.exit_ms,
                "peak_rss_mib": row.peak_rss_mib,
                "ratio_first_prediction": row.first_output_ms / python.first_output_ms,
                "ratio_exit": row.exit_ms / python.exit_ms,
                "ratio_peak_rss": row.peak_rss_mib / python.peak_rss_mib,
                "top5": row.top5,
                "top5_same_as_python": row.top5 == python.top5,
            }
            for row in rows
        ],
        "python_script": PYTHON_SCRIPT.strip(),
        "other_load_cores": load.cores,
        # what the spawner itself leaves in ru_maxrss: a lower bound for every row
        "rss_floor_mib": run_process(["/bin/true"]).peak_rss_kib / 1024,
    }
    print(f"\nStart-up: {result['model']}, fresh process each, median of {settings.startup_reps}")
    print(
        f"  {'':<28}{'1st prediction ms':>18}{'exit ms':>9}{'peak RSS MiB':>14}"
        f"{'x Python (1st / exit / RSS)':>30}  top-5"
    )
    for entry in result["rows"]:
        ratios = (
            f"{entry['ratio_first_prediction']:.2f} / {entry['ratio_exit']:.2f} / "
            f"{entry['ratio_peak_rss']:.2f}"
        )
        same = "same as Python" if entry["top5_same_as_python"] else "DIFFERS from Python"
        print(
            f"  {entry['name']:<28}{entry['first_prediction_ms']:>18.0f}{entry['exit_ms']:>9.0f}"
            f"{entry['peak_rss_mib']:>14.0f}{ratios:>30}  {same}"
        )
    print(f"  (peak RSS includes a floor of {result['rss_floor_mib']:.0f} MiB from the spawner)")
    print(f"  {load.describe()}")
    return result


# --- 3. per-call overhead ---------------------------------------------------------------------


class PlusOne(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


def measure_overhead(settings: Settings, work: Path) -> dict[str, Any]:
    """ns per call on `x + 1` (one element): tsnative.infer, Module, torch.jit, in blocks."""
    path = work / "plus_one.pt"
    torch.jit.save(torch.jit.script(PlusOne()), str(path))
    x = torch.ones(1)
    scripted = torch.jit.load(str(path))
    module = tsnative.load(path)
    block = settings.overhead_block

    def jit_block() -> None:
        with torch.no_grad():
            for _ in range(block):
                scripted(x)

    def infer_block() -> None:
        for _ in range(block):
            tsnative.infer(path, x)

    def module_block() -> None:
        for _ in range(block):
            module(x)

    def stat_block() -> None:
        for _ in range(block):
            os.stat(path)

    blocks: dict[str, Callable[[], None]] = {
        "torch.jit (no_grad)": jit_block,
        "tsnative.infer": infer_block,
        "tsnative Module": module_block,
        # What infer adds to a Module call: one stat() to notice a rewritten file.
        "os.stat (inside infer)": stat_block,
    }
    for run in blocks.values():  # warm-up, including the profiling executor's first runs
        run()
    samples: dict[str, list[float]] = {name: [] for name in blocks}
    order = list(blocks)
    shuffle = random.Random(3).shuffle
    rounds = 0
    deadline = time.perf_counter() + settings.overhead_time_s
    log(f"overhead: blocks of {block} calls for {settings.overhead_time_s}s")
    with gc_paused(), other_load() as load:
        while rounds < settings.overhead_min_rounds or time.perf_counter() < deadline:
            shuffle(order)
            for name in order:
                start = time.perf_counter_ns()
                blocks[name]()
                samples[name].append((time.perf_counter_ns() - start) / block)
            rounds += 1
    medians = {name: statistics.median(values) for name, values in samples.items()}
    jit = medians["torch.jit (no_grad)"]
    result = {
        "model": "x + 1 on a 1-element float tensor (TorchScript)",
        "calls_per_block": block,
        "rounds": rounds,
        "module_optimization": module.optimization,
        "other_load_cores": load.cores,
        "rows": [
            {"name": name, "ns_per_call": value, "ratio_jit": value / jit}
            for name, value in medians.items()
        ],
    }
    print(f"\nPer-call overhead: {result['model']}, median of {rounds} blocks of {block} calls")
    for row in result["rows"]:
        print(f"  {row['name']:<24}{row['ns_per_call']:>9.0f} ns{row['ratio_jit']:>8.2f} x jit")
    print(f"  {load.describe()}")
    return result


# --- 4. threads -------------------------------------------------------------------------------


def run_threads(
    module: tsnative.Module, inputs: tuple[torch.Tensor, ...], count: int, seconds: float
) -> dict[str, Any]:
    """`count` threads call the module in a loop for `seconds`; the calls they finished."""
    stop = threading.Event()
    barrier = threading.Barrier(count + 1)
    calls = [0] * count

    def work(slot: int) -> None:
        barrier.wait()
        while not stop.is_set():
            module(*inputs)
            calls[slot] += 1

    workers = [threading.Thread(target=work, args=(slot,)) for slot in range(count)]
    for worker in workers:
        worker.start()
    log(f"throughput: {count} Python thread(s) for {seconds}s")
    with other_load() as load:
        barrier.wait()
        start = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
    batch = inputs[0].shape[0]
    return {
        "python_threads": count,
        "images_per_s": sum(calls) * batch / elapsed,
        "other_load_cores": load.cores,
    }


def measure_throughput(script_path: Path, settings: Settings) -> dict[str, Any]:
    """Images/s with 1, 2 and 4 Python threads calling one Module (ResNet-18, batch 1)."""
    level = "exact"
    inputs = make_input(CLASSIFIER, 1)
    module = tsnative.load(script_path, optimize=level, warmup_inputs=inputs)
    for _ in range(settings.warmup):
        module(*inputs)
    rows = [run_threads(module, inputs, count, settings.throughput_s) for count in (1, 2, 4)]
    result = {
        "model": f"{CLASSIFIER} batch 1, optimize={level}",
        "optimization": module.optimization,
        "intra_op_threads": settings.threads,
        "rows": rows,
    }
    print(
        f"\nThroughput: {result['model']}, one Module, {settings.threads} intra-op threads "
        "(process-wide)"
    )
    for row in rows:
        print(
            f"  {row['python_threads']} Python thread(s): {row['images_per_s']:7.1f} images/s"
            f"  ({OtherLoad(row['other_load_cores']).describe()})"
        )
    return result


# --- 5. targets -------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    limit: float
    measured: float | None
    extra_ok: bool = True  # a condition besides the ratio (top-5 unchanged)
    note: str = ""

    @property
    def status(self) -> str:
        if self.measured is None:
            return "not measured"
        return "met" if self.measured <= self.limit and self.extra_ok else "missed"


def find_row(latency: list[LatencyResult], batch: int, runner: str) -> Row | None:
    for result in latency:
        if result.model == CLASSIFIER and result.batch == batch:
            return next((row for row in result.rows if row.runner == runner), None)
    return None


def evaluate_targets(
    latency: list[LatencyResult],
    startup: dict[str, Any] | None,
    overhead: dict[str, Any] | None,
) -> list[Target]:
    targets = []
    for level, limit in (("exact", 1.0), ("fast", 0.25)):
        for batch in (1, 8):
            row = find_row(latency, batch, f"tsnative {level} (Python)")
            top5 = row is not None and row.check is not None and bool(row.check.top5_same)
            name = f"{level} <= {limit}x ORT fp32, {CLASSIFIER} batch {batch}"
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


def print_targets(targets: list[Target]) -> None:
    print("\nTargets (issue 4)")
    for target in targets:
        measured = "-" if target.measured is None else f"{target.measured:.2f}x"
        gap = ""
        if target.status == "missed" and target.measured is not None:
            gap = f" (by {target.measured / target.limit:.2f}x the limit)"
            if not target.extra_ok:
                gap += " (top-5 changed)"
        note = f"  [{target.note}]" if target.note else ""
        print(f"  {target.name:<60}{measured:>7}  {target.status}{gap}{note}")


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


# --- main -------------------------------------------------------------------------------------

SECTIONS = ("latency", "startup", "overhead", "threads")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (~2 minutes)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "build" / "bench" / "results.json", help="JSON output"
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--batches", nargs="+", type=int, help="batch sizes (default: 1 8; with --quick: 1)"
    )
    parser.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="intra-op threads for every runner (default: the usable cores)",
    )
    parser.add_argument(
        "--ort-spinning",
        action="store_true",
        help="let ONNX Runtime's threads busy-wait between runs (its default; off here "
        "because, interleaved, the spinning slows whichever runner comes next)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement, wait up to this long for other processes to go idle",
    )
    args = parser.parse_args(argv)
    if args.batches is None:
        args.batches = [1] if args.quick else [1, 8]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.make(args.quick, args.threads, args.ort_spinning)
    torch.set_num_threads(settings.threads)
    tsnative.set_num_threads(settings.threads)
    ts_infer = find_ts_infer()
    work = args.out.parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_info(settings)
    print(
        f"tsnative {machine['tsnative']} benchmark: {machine['cpu']}, {machine['cores']} cores "
        f"({' '.join(machine['isa'])}), torch {machine['torch']}, onnxruntime "
        f"{machine['onnxruntime']}, openvino {machine['openvino']}, {settings.threads} threads, "
        f"{machine['date']}"
    )
    print(f"ts-infer: {ts_infer.path} (default optimize level: {ts_infer.default_level})")

    needed = set(args.models) | ({CLASSIFIER} if set(args.sections) - {"latency"} else set())
    log(f"scripting {', '.join(sorted(needed))}")
    scripts = {model: save_torchscript(model, work) for model in sorted(needed)}

    latency: list[LatencyResult] = []
    if "latency" in args.sections:
        for model in args.models:
            for batch in args.batches:
                wait_for_quiet(args.wait_quiet)
                result = measure_latency(
                    Case.make(model, batch, scripts[model]), ts_infer, settings, work
                )
                print_latency(result, settings.threads)
                latency.append(result)
    startup = overhead = throughput = None
    if "startup" in args.sections:
        wait_for_quiet(args.wait_quiet)
        startup = measure_startup(scripts[CLASSIFIER], ts_infer, settings, work)
    if "overhead" in args.sections:
        wait_for_quiet(args.wait_quiet)
        overhead = measure_overhead(settings, work)
    if "threads" in args.sections:
        wait_for_quiet(args.wait_quiet)
        throughput = measure_throughput(scripts[CLASSIFIER], settings)
    targets = evaluate_targets(latency, startup, overhead)
    print_targets(targets)
    noisy = noisy_measurements(latency, startup, overhead, throughput)
    if noisy:
        print(
            f"\nWARNING: other processes kept more than {NOISY_CORES} cores busy during: "
            f"{', '.join(noisy)}. Those numbers are suspect; rerun on a quiet machine "
            "(--wait-quiet SECONDS waits for one)."
        )

    runtime_s = time.perf_counter() - STARTED
    results = {
        "machine": machine,
        "settings": {**asdict(settings), "quick": args.quick, "levels": LEVELS},
        "ts_infer": asdict(ts_infer),
        "latency": [asdict(result) for result in latency],
        "startup": startup,
        "overhead": overhead,
        "throughput": throughput,
        "targets": [{**asdict(target), "status": target.status} for target in targets],
        "noisy_measurements": noisy,
        "runtime_s": runtime_s,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out} ({runtime_s:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
