"""Sections 3 and 4: per-call overhead on a tiny model, and throughput from Python threads."""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import tsnative

from .common import Settings, log
from .measure import OtherLoad, gc_paused, other_load
from .models import CLASSIFIER, make_input


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
