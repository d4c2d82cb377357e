"""Timing: runners, interleaved rounds, statistics, and how busy the rest of the machine was."""

from __future__ import annotations

import contextlib
import gc
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .common import NOISY_CORES, Settings, log


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


@dataclass
class Runner:
    """One way of running the model: a call with its inputs bound, and its timings."""

    name: str
    call: Callable[[], Any]
    peer: bool  # not tsnative: a competitor the ratios are taken against
    setup_ms: float
    reduced_precision: bool = False
    quantized: bool = False  # int8: held to cosine, and never a float32 row's peer
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
