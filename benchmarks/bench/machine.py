"""The machine, the ts-infer binary and the process-wide switches a load could flip."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tsnative

from .common import Settings


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
