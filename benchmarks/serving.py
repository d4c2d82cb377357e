"""Serving benchmark: `ts-infer serve` driven by Triton's own HTTP client at concurrency 1, 4,
16 and 64 (one row per request, binary tensor data), against the limit: in-process Module
calls at the same batch sizes. Prints throughput and p50 / p99 latency, then the targets of
the serve issue, met or missed. Loopback only; each run stops after a bounded count and time.

    .venv/bin/python benchmarks/serving.py [--quick] [--models resnet18 encoder]

The peer with Python on its request path: MLServer, serving the same TorchScript file through
a small custom runtime (benchmarks/mlserver_runtime/) with its adaptive batching at the same
maximum batch, from its own virtualenv (--mlserver, default .venv-mlserver: `python -m venv
.venv-mlserver && .venv-mlserver/bin/pip install torch==2.13.0 mlserver`); compared at
concurrency 16 with JSON tensors on both sides (MLServer's REST takes no binary data). Without
that virtualenv its row and target print as "not measured". LitServe is not measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import tsnative
from bench.common import zoo
from bench.models import minilm_sized_encoder

CONCURRENCY = (1, 4, 16, 64)
MAX_BATCH = 16


def models() -> dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...]]]:
    return {
        "resnet18": (lambda: zoo().build("resnet18"), (3, 224, 224)),
        "encoder": (minilm_sized_encoder, (128, 384)),
    }


def cpu_name() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        return next(
            line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def in_process(path: Path, shape: tuple[int, ...], batch: int, seconds: float) -> dict:
    """Module calls at one batch size: rows/s and per-call latency."""
    module = tsnative.load(path)
    x = torch.rand(batch, *shape)
    for _ in range(3):
        module(x)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and len(times) < 500:
        began = time.perf_counter()
        module(x)
        times.append(time.perf_counter() - began)
    elapsed = sum(times)
    return {
        "rows_per_s": batch * len(times) / elapsed,
        "p50_ms": 1000 * statistics.median(times),
        "calls": len(times),
    }


def served(
    client,
    name: str,
    shape: tuple[int, ...],
    concurrency: int,
    seconds: float,
    binary: bool = True,
    input_name: str | None = None,
) -> dict:
    """`concurrency` requests in flight at once through the client's own pool."""
    import tritonclient.http as httpclient

    x = np.random.rand(1, *shape).astype(np.float32)
    input_name = input_name or client.get_model_metadata(name)["inputs"][0]["name"]

    def request():
        tensor = httpclient.InferInput(input_name, [1, *shape], "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        output = httpclient.InferRequestedOutput("output", binary_data=binary)
        return time.perf_counter(), client.async_infer(name, [tensor], outputs=[output])

    for _ in range(concurrency):  # warm-up
        request()[1].get_result(timeout=120)
    latencies = []
    in_flight = [request() for _ in range(concurrency)]
    start = time.perf_counter()
    limit = max(40, 20 * concurrency)
    while in_flight:
        sent, pending = in_flight.pop(0)
        pending.get_result(timeout=120)
        latencies.append(time.perf_counter() - sent)
        if time.perf_counter() - start < seconds and len(latencies) + len(in_flight) < limit:
            in_flight.append(request())
    elapsed = time.perf_counter() - start
    return {
        "rows_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "requests": len(latencies),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def mlserver(venv: Path, paths: dict[str, Path], directory: Path) -> Iterator[str | None]:
    """MLServer serving each TorchScript file through the custom runtime; its address, or None
    where its virtualenv is missing."""
    binary = venv / "bin" / "mlserver"
    if not binary.is_file():
        print(f"MLServer: not measured ({binary} is missing; see this file's docstring)")
        yield None
        return
    root = directory / "mlserver"
    port = free_port()
    for name, path in paths.items():
        (root / name).mkdir(parents=True)
        settings = {
            "name": name,
            "implementation": "torchscript_runtime.TorchScriptRuntime",
            "parameters": {"uri": str(path)},
            "max_batch_size": MAX_BATCH,
            "max_batch_time": 0.002,
        }
        (root / name / "model-settings.json").write_text(json.dumps(settings))
    (root / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "host": "127.0.0.1",
                "parallel_workers": 0,
            }
        )
    )
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parent / "mlserver_runtime")}
    process = subprocess.Popen(
        [str(binary), "start", str(root)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("MLServer did not become ready") from None
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--models", nargs="+", default=list(models()), choices=list(models()))
    parser.add_argument("--out", default="build/bench/serving.json")
    parser.add_argument(
        "--mlserver", default=".venv-mlserver", type=Path, help="the virtualenv MLServer runs from"
    )
    args = parser.parse_args()
    seconds = 2.0 if args.quick else 8.0
    import tritonclient.http as httpclient

    results: dict = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "models": {}}
    print(f"CPU: {results['cpu']}, {torch.get_num_threads()} threads; client and server share it")
    with tempfile.TemporaryDirectory() as directory:
        repository = Path(directory)
        paths = {}
        for name in args.models:
            build, shape = models()[name]
            paths[name] = repository / f"{name}.pt"
            tsnative.export(build().eval(), torch.rand(1, *shape), paths[name], progress=False)
        server = tsnative.serve(
            repository,
            http_port=0,
            background=True,
            max_batch_size=MAX_BATCH,
            log_level="error",
        )
        assert isinstance(server, tsnative.Server)
        with server:
            server.wait_ready()
            client = httpclient.InferenceServerClient(
                server.url.removeprefix("http://"), concurrency=max(CONCURRENCY)
            )
            for name in args.models:
                shape = models()[name][1]
                rows = {}
                for concurrency in CONCURRENCY:
                    batch = min(concurrency, MAX_BATCH)
                    limit = in_process(paths[name], shape, batch, seconds)
                    got = served(client, name, shape, concurrency, seconds)
                    rows[concurrency] = {"in_process": limit, "served": got}
                    print(
                        f"{name:9} c={concurrency:<3} served {got['rows_per_s']:7.1f} rows/s "
                        f"p50 {got['p50_ms']:7.2f} ms p99 {got['p99_ms']:7.2f} ms | in-process "
                        f"batch {batch}: {limit['rows_per_s']:7.1f} rows/s, "
                        f"{limit['p50_ms']:7.2f} ms/call",
                        flush=True,
                    )
                # JSON on both sides for the peer (its REST takes no binary data).
                rows["json16"] = served(client, name, shape, 16, seconds, binary=False)
                results["models"][name] = rows
            client.close()
        with mlserver(args.mlserver, paths, repository) as address:
            if address is not None:
                peer = httpclient.InferenceServerClient(address, concurrency=16)
                for name in args.models:
                    shape = models()[name][1]
                    got = served(peer, name, shape, 16, seconds, binary=False, input_name="input")
                    results["models"][name]["mlserver16"] = got
                    ours = results["models"][name]["json16"]
                    print(
                        f"{name:9} c=16 JSON: tsnative {ours['rows_per_s']:7.1f} rows/s "
                        f"p50 {ours['p50_ms']:7.2f} ms | MLServer {got['rows_per_s']:7.1f} rows/s "
                        f"p50 {got['p50_ms']:7.2f} ms",
                        flush=True,
                    )
                peer.close()
    print("\ntargets (serve issue):")
    for name, rows in results["models"].items():
        ratio = rows[16]["served"]["rows_per_s"] / rows[16]["in_process"]["rows_per_s"]
        added = rows[1]["served"]["p50_ms"] - rows[1]["in_process"]["p50_ms"]
        print(
            f"  {name}: c=16 throughput {ratio:.2f}x in-process batched (>= 0.8): "
            f"{'met' if ratio >= 0.8 else 'missed'}"
        )
        print(
            f"  {name}: c=1 p50 in-process + {added:.2f} ms (<= 1 ms): "
            f"{'met' if added <= 1.0 else 'missed'}"
        )
        if "mlserver16" in rows:
            versus = rows["json16"]["rows_per_s"] / rows["mlserver16"]["rows_per_s"]
            print(
                f"  {name}: c=16 throughput {versus:.2f}x MLServer's (>= 3, JSON both): "
                f"{'met' if versus >= 3 else 'missed'}"
            )
        else:
            print(f"  {name}: c=16 throughput >= 3x MLServer's: not measured")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
