"""Load time of ResNet-18 at each optimize level that chooses a variant: a first load (the
variants built, warmed up and timed) against a second one (the choice cache remembers the
winner: only it is built and warmed up), each in a fresh process, interleaved; median of
ROUNDS. The issue-12 target: a second exact / fast load within 0.3 s.

    .venv/bin/python benchmarks/load_time.py [--rounds N] [--batch B]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from resnet18 import resnet18

TARGET_S = 0.3
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        model = Path(work) / "resnet18.pt"
        torch.jit.script(resnet18(seed=0).eval()).save(str(model))
        times: dict[tuple[str, str], list[float]] = {}
        variants: dict[str, str] = {}
        for round_ in range(args.rounds):
            for level in ("exact", "fast"):
                cache = Path(work) / f"cache-{level}-{round_}"  # empty: a first load
                for which in ("first", "second"):
                    seconds, variant, how = load_once(model, level, cache, args.batch)
                    assert how == ("timed" if which == "first" else "remembered"), how
                    times.setdefault((level, which), []).append(seconds)
                    variants[level] = variant
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    print(f"ResNet-18 load, batch {args.batch}, {cpu_name()}, torch {torch.__version__}, ")
    print(f"{torch.get_num_threads()} threads; median of {args.rounds} fresh processes each\n")
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
