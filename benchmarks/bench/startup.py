"""Section 2, start-up: ts-infer's time to first prediction and peak RSS against Python."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .common import LEVELS, Settings, log
from .machine import TsInfer
from .measure import other_load
from .models import CLASSIFIER, make_input

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
