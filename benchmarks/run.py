"""tsnative's own benchmark: latency, start-up, per-call overhead and thread scaling.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/run.py``; ``--quick`` for a short
smoke run). Tables go to stdout, progress to stderr, everything to a JSON file
(``--out``, default build/bench/results.json). See benchmarks/README.md for how to read it.

Sections (each a module of benchmarks/bench/):
1. latency   eager PyTorch, Python torch.jit.load, ONNX Runtime, OpenVINO (float32 and its
             default precision), their int8 (quantize_static, NNCF), tsnative at each
             optimize level and its .pt2 packages (float32, bfloat16, int8), in one process,
             interleaved round-robin after warm-up; then ts-infer at each level and on the
             packages (one process each, its own --repeat). Models: bench/models.py.
2. startup   ts-infer time to first prediction and peak RSS against a minimal Python script.
3. overhead  per-call cost of tsnative.infer / Module on a tiny model against torch.jit.
4. threads   images/s with 1, 2 and 4 Python threads calling one Module.
5. accuracy  int8 on a real encoder: all-MiniLM-L6-v2's trained weights on real sentences,
             against sentence-transformers' float32 embeddings.
6. targets   the ratios the project aims for (issues 4, 12 and 27), met or missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import tsnative
from bench.accuracy import measure_int8_accuracy, print_accuracy
from bench.calls import measure_overhead, measure_throughput
from bench.common import LEVELS, NOISY_CORES, ROOT, STARTED, Settings, log
from bench.latency import LatencyResult, measure_latency, print_latency
from bench.machine import find_ts_infer, machine_info
from bench.measure import wait_for_quiet
from bench.models import CLASSIFIER, DEFAULT_MODELS, MODELS, Case
from bench.startup import measure_startup
from bench.targets import evaluate_targets, noisy_measurements, print_targets

SECTIONS = ("latency", "startup", "overhead", "threads", "accuracy")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (~2 minutes)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "build" / "bench" / "results.json", help="JSON output"
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(DEFAULT_MODELS))
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
    skipped = {name: MODELS[name].missing() for name in sorted(needed) if MODELS[name].missing()}
    for name, reason in skipped.items():
        print(f"{name}: not measured: {reason}")
    log(f"saving TorchScript of {', '.join(sorted(needed - set(skipped)))}")
    scripts = {
        name: MODELS[name].save_torchscript(work) for name in sorted(needed) if name not in skipped
    }

    native_bf16 = bool({"avx512_bf16", "amx_bf16"} & set(machine["isa"]))
    vnni = tsnative.cpu_has_vnni()  # what tsnative's int8 (and the int8 peers here) go by
    latency: list[LatencyResult] = []
    if "latency" in args.sections:
        for name in (name for name in args.models if name in scripts):
            for batch in args.batches:
                wait_for_quiet(args.wait_quiet)
                case = Case.make(MODELS[name], batch, scripts[name])
                result = measure_latency(
                    case, ts_infer, settings, work, native_bf16, tuple(args.batches)
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
    accuracy = None
    if "accuracy" in args.sections:
        accuracy = measure_int8_accuracy(work)
        print_accuracy(accuracy)
    targets = evaluate_targets(latency, startup, overhead, native_bf16, vnni, accuracy)
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
        "accuracy": asdict(accuracy) if accuracy else None,
        "targets": {
            title: [{**asdict(target), "status": target.status} for target in group]
            for title, group in targets.items()
        },
        "noisy_measurements": noisy,
        "runtime_s": runtime_s,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out} ({runtime_s:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
