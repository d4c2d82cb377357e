"""What every part of the benchmark shares: paths, settings, progress lines, the parity zoo."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsnative.compare import LEVELS  # noqa: F401  (the core's levels, less bf16)

ROOT = Path(__file__).resolve().parents[2]  # the repository
FP32_RTOL = 1e-4  # max |runner - eager| <= FP32_RTOL * max(1, max |eager|)
REDUCED_RTOL = 5e-2  # the same for "fast" (reduced precision), whose top-5 must still match
MIN_COSINE = 0.99  # fast on an encoder: cosine similarity with eager's output at least this
NOISY_CORES = 0.25  # other processes busier than this while we measure: the numbers are suspect
STARTED = time.perf_counter()


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


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""
