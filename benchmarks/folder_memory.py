"""Peak memory of classifying a folder: 1,000 against 10,000 images (issue 13).

    .venv/bin/python benchmarks/folder_memory.py [--counts 1000 10000] [--batch-size 32]

Writes the images once (64x64 PNGs of noise, build/bench/folder/), exports a small classifier
with its preprocessing inside, then classifies the first N files of the folder with ts-infer
(--json) and with tsnative.classify in a fresh Python. What is measured is the peak of the
process's anonymous memory (RssAnon in /proc/PID/status, sampled every 5 ms): its heap,
tensors and stacks. Peak RSS (wait4) is printed beside it but not judged: it also counts the
pages of libtorch's 400+ MB of shared libraries that the kernel maps around each page fault
from whatever the page cache holds, and moved by 150 MB between identical runs here.
Files are decoded a batch at a time, so the peak should not grow with N: the target is the
10,000-image run within 1.1x of the 1,000-image one (what does grow: one small result per
file, all of them returned).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import tsnative
from bench.common import ROOT, log
from bench.machine import find_ts_infer
from PIL import Image

TARGET_RATIO = 1.1

CLASSIFY = """
import sys, tsnative
results = tsnative.classify(sys.argv[1], sys.argv[2], batch_size=int(sys.argv[3]), progress=False)
print(sum(r.error is None for r in results), flush=True)
"""


def peak_memory_mib(command: list[str]) -> tuple[float, float, str]:
    """Runs `command`; returns (peak anonymous MiB, peak RSS MiB, stdout)."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
        status = Path(f"/proc/{process.pid}/status")
        peak_anon_kib = 0
        while True:
            pid, exit_status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = status.read_text()
                peak_anon_kib = max(peak_anon_kib, int(text.split("RssAnon:")[1].split()[0]))
            time.sleep(0.005)
        process.returncode = os.waitstatus_to_exitcode(exit_status)
        if process.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} exited {process.returncode}")
        out.seek(0)
        return peak_anon_kib / 1024, usage.ru_maxrss / 1024, out.read().decode()


def write_images(directory: Path, count: int) -> None:
    existing = len(list(directory.glob("*.png"))) if directory.is_dir() else 0
    if existing >= count:
        return
    directory.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(0)
    for i in range(existing, count):
        pixels = generator.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / f"img_{i:05d}.png", compress_level=1)
        if (i + 1) % 2000 == 0:
            log(f"folder memory: wrote {i + 1} images")


def export_model(path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    ).eval()
    # Labels longer than a short string holds inline: each result then allocates them too.
    labels = [f"a class name of some length, number {i}" for i in range(10)]
    tsnative.export(
        model, torch.rand(1, 3, 56, 56), path, labels=labels, preprocess={"resize": 64, "crop": 56}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", nargs="+", type=int, default=[1000, 10000])
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    work = ROOT / "build" / "bench"
    images = work / "folder"
    write_images(images, max(args.counts))
    model = work / "folder_classifier.pt"
    export_model(model)
    ts_infer = find_ts_infer()
    rows = []
    for count in args.counts:
        subset = work / f"folder_{count}"  # the first `count` images, as links
        shutil.rmtree(subset, ignore_errors=True)
        subset.mkdir()
        for source in sorted(images.glob("*.png"))[:count]:
            (subset / source.name).symlink_to(source)
        log(f"folder memory: {count} images")
        cli_anon, cli_rss, cli_out = peak_memory_mib(
            [
                str(ts_infer.path),
                str(model),
                str(subset),
                "--json",
                "--batch-size",
                str(args.batch_size),
            ]
        )
        assert cli_out.count("\n") == count, "ts-infer did not print one line per image"
        py_anon, py_rss, py_out = peak_memory_mib(
            [sys.executable, "-c", CLASSIFY, str(model), str(subset), str(args.batch_size)]
        )
        assert int(py_out.strip()) == count
        rows.append((count, cli_anon, py_anon, cli_rss, py_rss))
    print(f"Peak memory classifying a folder of 64x64 PNGs, batch size {args.batch_size}, MiB")
    print(
        f"  {'images':>8}  {'ts-infer anon':>14}  {'classify anon':>14}"
        f"  {'ts-infer RSS':>13}  {'classify RSS':>13}"
    )
    for count, cli_anon, py_anon, cli_rss, py_rss in rows:
        print(
            f"  {count:>8}  {cli_anon:>14.1f}  {py_anon:>14.1f}  {cli_rss:>13.1f}  {py_rss:>13.1f}"
        )
    first, last = rows[0], rows[-1]
    for name, column in (("ts-infer", 1), ("tsnative.classify", 2)):
        ratio = last[column] / first[column]
        verdict = "met" if ratio <= TARGET_RATIO else "missed"
        print(
            f"  {name}: anonymous memory, {last[0]} vs {first[0]} images {ratio:.2f}x "
            f"(target <= {TARGET_RATIO}x) {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
