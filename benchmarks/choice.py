"""How an optimize level's choice of variant costs, on ResNet-18 (issue 12's targets):

1. Fast loads: a first load (every variant built, warmed up and timed) against a second one (the
   choice cache remembers the winner: only it is built and warmed up), each in a fresh process,
   interleaved, median of ROUNDS. Target: a second exact / fast load within 0.3 s.
2. No warm-up inputs: a Module loaded without warmup_inputs (the first call chooses) against
   one warmed up in load, called in interleaved rounds in one process: steady-state latency,
   as a ratio. Target: within 1.1x; the first call's own cost is shown too.

    .venv/bin/python benchmarks/choice.py [--rounds N] [--batch B] [--calls N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from resnet18 import resnet18

TARGET_S = 0.3
TARGET_RATIO = 1.1
LOAD = """
import sys, time, torch, tsnative
x = torch.rand({batch}, 3, 224, 224)
start = time.perf_counter()
m = tsnative.load(sys.argv[1], optimize=sys.argv[2], warmup_inputs=(x,), cache_dir=sys.argv[3])
print(time.perf_counter() - start)
print(m.optimization.split(" [")[0])
print("remembered" if " [remembered in " in m.optimization else "timed")
"""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_once(model: Path, level: str, cache: Path, batch: int) -> tuple[float, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", LOAD.format(batch=batch), str(model), level, str(cache)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, variant, how = done.stdout.strip().splitlines()[-3:]
    return float(seconds), variant, how


def steady_state(model: Path, batch: int, calls: int) -> None:
    """Section 2: first-call choice against a warmed-up load, interleaved."""
    import tsnative

    x = torch.rand(batch, 3, 224, 224)
    print(f"\nSteady state, batch {batch}: median ms of {calls} interleaved calls each\n")
    print(
        "| level | warmed up in load | chosen on the first call | ratio | target <= 1.1x "
        "| first call (s) |"
    )
    print("|---|---:|---:|---:|---|---:|")
    for level in ("exact", "fast"):
        warm = tsnative.load(model, optimize=level, warmup_inputs=(x,), cache_dir=False)
        lazy = tsnative.load(model, optimize=level, cache_dir=False)
        start = time.perf_counter()
        lazy(x)
        first_call_s = time.perf_counter() - start
        samples: dict[str, list[float]] = {"warm": [], "lazy": []}
        for _ in range(calls):
            for name, module in (("warm", warm), ("lazy", lazy)):
                start = time.perf_counter()
                module(x)
                samples[name].append((time.perf_counter() - start) * 1000)
        warm_ms = statistics.median(samples["warm"])
        lazy_ms = statistics.median(samples["lazy"])
        ratio = lazy_ms / warm_ms
        print(
            f"| {level} | {warm_ms:.2f} | {lazy_ms:.2f} | {ratio:.2f}x "
            f"| {'met' if ratio <= TARGET_RATIO else 'missed'} | {first_call_s:.2f} |"
        )
        print(
            f"  warmed: {warm.optimization.split(' [')[0]}; first call: "
            f"{lazy.optimization.split(' [')[0]}",
            file=sys.stderr,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        model = Path(work) / "resnet18.pt"
        torch.jit.script(resnet18(seed=0).eval()).save(str(model))
        fast_loads(model, work, args.rounds, args.batch)
        steady_state(model, args.batch, args.calls)


def fast_loads(model: Path, work: str, rounds: int, batch: int) -> None:
    """Section 1: first and second loads, fresh processes, interleaved."""
    times: dict[tuple[str, str], list[float]] = {}
    variants: dict[str, str] = {}
    for round_ in range(rounds):
        for level in ("exact", "fast"):
            cache = Path(work) / f"cache-{level}-{round_}"  # empty: a first load
            for which in ("first", "second"):
                seconds, variant, how = load_once(model, level, cache, batch)
                assert how == ("timed" if which == "first" else "remembered"), how
                times.setdefault((level, which), []).append(seconds)
                variants[level] = variant
        print(f"round {round_ + 1}/{rounds} done", file=sys.stderr)
    print(f"ResNet-18, {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"\nLoad, batch {batch}: median s of {rounds} fresh processes each\n")
    print("| level | first load (s) | second load (s) | ratio | target <= 0.3 s | variant |")
    print("|---|---:|---:|---:|---|---|")
    for level in ("exact", "fast"):
        first = statistics.median(times[(level, "first")])
        second = statistics.median(times[(level, "second")])
        verdict = "met" if second <= TARGET_S else "missed"
        print(
            f"| {level} | {first:.2f} | {second:.2f} | {second / first:.2f}x | {verdict} "
            f"| {variants[level]} |"
        )


if __name__ == "__main__":
    main()
