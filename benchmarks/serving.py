"""Serving benchmark: `ts-infer serve` driven by Triton's own clients, HTTP (binary tensor data)
and gRPC (raw contents), at concurrency 1, 4, 16 and 64 (one row per request), against the
limit: in-process Module calls at the same batch sizes. Prints throughput and p50 / p99
latency for both protocols side by side, then the targets of the serve issues, met or missed.
Loopback only; each run stops after a bounded count and time.

    .venv/bin/python benchmarks/serving.py [--quick] [--models resnet18 encoder]

The peers with Python on their request path, from their own virtualenv (--peers, default
.venv-peers: `make bench-serving` makes it, torch==2.13.0 mlserver litserve), each serving the
same TorchScript file with its own batching at the same maximum: MLServer through a small
custom runtime (serving_peers/mlserver_runtime.py, its adaptive batching), LitServe through a
LitAPI at the protocol's infer path (serving_peers/litserve_server.py, its batch_timeout).
Compared at concurrency 16 with JSON tensors on all sides (neither takes binary data), posted by
a plain keep-alive HTTP client with each body encoded once: Triton's client spends more CPU
encoding JSON than the servers spend on it, and client and servers share the cores. The c=1
latency is measured through the same plain client as well. Without that virtualenv the peers'
rows and targets print as "not measured".
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import threading
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


def figures(latencies: list[float], elapsed: float) -> dict:
    """One row's figures: one row per request, so rows/s is requests/s."""
    return {
        "rows_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "requests": len(latencies),
    }


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
    client, name: str, input_name: str, shape: tuple[int, ...], concurrency: int, seconds: float
) -> dict:
    """`concurrency` requests in flight at once through the client's own pool, binary data."""
    import tritonclient.http as httpclient

    x = np.random.rand(1, *shape).astype(np.float32)

    def request():
        tensor = httpclient.InferInput(input_name, [1, *shape], "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        output = httpclient.InferRequestedOutput("output", binary_data=True)
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
    return figures(latencies, time.perf_counter() - start)


def served_grpc(
    client,
    name: str,
    input_name: str,
    x: np.ndarray,
    expected: np.ndarray,
    concurrency: int,
    seconds: float,
) -> dict:
    """`concurrency` calls in flight at once through tritonclient.grpc's async_infer (each
    answer's callback sends the next), raw contents; the warm-up answers are checked against
    `expected`."""
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput(input_name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    for _ in range(concurrency):
        got = client.infer(name, [tensor]).as_numpy("output")
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
    latencies: list[float] = []
    errors: list[Exception] = []
    done = threading.Condition()
    limit = max(40, 20 * concurrency)
    state = {"sent": concurrency, "open": concurrency}
    start = time.perf_counter()

    def send() -> None:
        sent = time.perf_counter()
        client.async_infer(name, [tensor], callback=lambda result, error: answered(sent, error))

    def answered(sent: float, error: Exception | None) -> None:
        with done:
            latencies.append(time.perf_counter() - sent)
            if error is not None:
                errors.append(error)
            more = not errors and time.perf_counter() - start < seconds and state["sent"] < limit
            state["sent"] += more
            state["open"] += more - 1
            done.notify_all()
        if more:
            send()

    for _ in range(concurrency):
        send()
    with done:
        if not done.wait_for(lambda: state["open"] == 0, timeout=seconds + 300):
            raise RuntimeError(f"gRPC calls still open after {seconds + 300} s")
    if errors:
        raise RuntimeError(f"gRPC: {errors[0]}")
    return figures(latencies, time.perf_counter() - start)


def request_body(input_name: str, x: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    """One infer request, encoded once: JSON tensors, or binary data after a JSON header."""
    tensor: dict = {"name": input_name, "shape": list(x.shape), "datatype": "FP32"}
    if not binary:
        tensor["data"] = x.flatten().tolist()
        return json.dumps({"inputs": [tensor]}).encode(), {"Content-Type": "application/json"}
    tensor["parameters"] = {"binary_data_size": x.nbytes}
    output = {"name": "output", "parameters": {"binary_data": True}}
    header = json.dumps({"inputs": [tensor], "outputs": [output]}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))}
    return header + x.tobytes(), {**headers, "Content-Type": "application/octet-stream"}


def answer(response: http.client.HTTPResponse, body: bytes) -> np.ndarray:
    """The first output of an infer response, JSON or binary."""
    length = response.getheader("Inference-Header-Content-Length")
    header = json.loads(body if length is None else body[: int(length)])
    output = header["outputs"][0]
    if length is None:
        return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    return np.frombuffer(body[int(length) :], dtype=np.float32).reshape(output["shape"])


def posted(
    address: str,
    path: str,
    request: tuple[bytes, dict[str, str]],
    expected: np.ndarray,
    concurrency: int,
    seconds: float,
) -> dict:
    """`concurrency` plain keep-alive HTTP clients (a thread each) posting one request encoded
    once, so that the server's work is measured rather than a client library's encoding. The
    first answer of each client is checked against `expected`."""
    body, headers = request
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    limit = max(40, 20 * concurrency)
    clock: dict[str, float] = {}
    started = threading.Barrier(concurrency, action=lambda: clock.update(start=time.perf_counter()))
    finished: list[float] = []

    def post(connection: http.client.HTTPConnection) -> tuple[http.client.HTTPResponse, bytes]:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: status {response.status}: {data[:200]!r}")
        return response, data

    def client() -> None:
        connection = http.client.HTTPConnection(address, timeout=120)
        try:
            np.testing.assert_allclose(answer(*post(connection)), expected, rtol=1e-3, atol=1e-3)
        except Exception as error:  # reported below, once every client is past the barrier
            failures.append(f"{type(error).__name__}: {error}")
        started.wait()
        while not failures and time.perf_counter() < clock["start"] + seconds:
            with lock:
                if len(latencies) >= limit:
                    break
            began = time.perf_counter()
            post(connection)
            with lock:
                latencies.append(time.perf_counter() - began)
        finished.append(time.perf_counter())
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(failures[0])
    return figures(latencies, max(finished) - clock["start"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def peer_process(label: str, command: list[str], ready_url: str, env: dict) -> Iterator[None]:
    """A peer server's process, until it answers ready_url; stopped on exit."""
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{label} did not become ready") from None
                time.sleep(0.5)
        yield
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


PEERS_CODE = Path(__file__).parent / "serving_peers"


@contextlib.contextmanager
def mlserver(venv: Path, paths: dict[str, Path], directory: Path) -> Iterator[str]:
    """MLServer serving each TorchScript file through the custom runtime: its address."""
    root = directory / "mlserver"
    port = free_port()
    for name, path in paths.items():
        (root / name).mkdir(parents=True)
        settings = {
            "name": name,
            "implementation": "mlserver_runtime.TorchScriptRuntime",
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
    command = [str(venv / "bin" / "mlserver"), "start", str(root)]
    ready = f"http://127.0.0.1:{port}/v2/health/ready"
    with peer_process("MLServer", command, ready, {"PYTHONPATH": str(PEERS_CODE)}):
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def litserve(venv: Path, paths: dict[str, Path], directory: Path) -> Iterator[str]:
    """LitServe serving each TorchScript file at the protocol's infer path: its address."""
    port = free_port()
    command = [str(venv / "bin" / "python"), str(PEERS_CODE / "litserve_server.py")]
    command += [str(port), str(MAX_BATCH), *(f"{name}={path}" for name, path in paths.items())]
    with peer_process("LitServe", command, f"http://127.0.0.1:{port}/health", {}):
        yield f"127.0.0.1:{port}"


PEERS = {"MLServer": mlserver, "LitServe": litserve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--models", nargs="+", default=list(models()), choices=list(models()))
    parser.add_argument("--out", default="build/bench/serving.json")
    parser.add_argument(
        "--peers", default=".venv-peers", type=Path, help="the virtualenv the peers run from"
    )
    args = parser.parse_args()
    seconds = 2.0 if args.quick else 8.0
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    results: dict = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "models": {}}
    print(f"CPU: {results['cpu']}, {torch.get_num_threads()} threads; client and server share it")
    with tempfile.TemporaryDirectory() as directory:
        repository = Path(directory)
        paths = {}
        references: dict[str, np.ndarray] = {}
        json_requests: dict[str, tuple[bytes, dict[str, str]]] = {}
        for name in args.models:
            build, shape = models()[name]
            paths[name] = repository / f"{name}.pt"
            tsnative.export(build().eval(), torch.rand(1, *shape), paths[name], progress=False)
        server = tsnative.serve(
            repository,
            http_port=0,
            grpc_port=0,
            background=True,
            max_batch_size=MAX_BATCH,
            log_level="error",
        )
        assert isinstance(server, tsnative.Server)
        with server:
            server.wait_ready()
            address = server.url.removeprefix("http://")
            client = httpclient.InferenceServerClient(address, concurrency=max(CONCURRENCY))
            assert server.grpc_address is not None
            rpc = grpcclient.InferenceServerClient(server.grpc_address)
            for name in args.models:
                shape = models()[name][1]
                input_name = client.get_model_metadata(name)["inputs"][0]["name"]
                x = np.random.rand(1, *shape).astype(np.float32)
                references[name] = tsnative.load(paths[name])(torch.from_numpy(x)).numpy()
                json_requests[name] = request_body(input_name, x, binary=False)
                rows = {}
                for concurrency in CONCURRENCY:
                    batch = min(concurrency, MAX_BATCH)
                    limit = in_process(paths[name], shape, batch, seconds)
                    got = served(client, name, input_name, shape, concurrency, seconds)
                    called = served_grpc(
                        rpc, name, input_name, x, references[name], concurrency, seconds
                    )
                    rows[concurrency] = {"in_process": limit, "served": got, "grpc": called}
                    print(
                        f"{name:9} c={concurrency:<3} REST {got['rows_per_s']:7.1f} rows/s "
                        f"p50 {got['p50_ms']:7.2f} ms p99 {got['p99_ms']:7.2f} ms | gRPC "
                        f"{called['rows_per_s']:7.1f} rows/s p50 {called['p50_ms']:7.2f} ms "
                        f"p99 {called['p99_ms']:7.2f} ms | in-process batch {batch}: "
                        f"{limit['rows_per_s']:7.1f} rows/s, {limit['p50_ms']:7.2f} ms/call",
                        flush=True,
                    )
                infer = f"/v2/models/{name}/infer"
                binary = request_body(input_name, x, binary=True)
                rows["plain1"] = posted(address, infer, binary, references[name], 1, seconds)
                print(
                    f"{name:9} c=1   plain client, binary: p50 {rows['plain1']['p50_ms']:7.2f} ms",
                    flush=True,
                )
                # JSON on all sides for the peers (their REST takes no binary data).
                rows["json16"] = posted(
                    address, infer, json_requests[name], references[name], 16, seconds
                )
                results["models"][name] = rows
            client.close()
            rpc.close()
        for peer, start_peer in PEERS.items():
            if not (args.peers / "bin" / "python").is_file():
                print(f"{peer}: not measured ({args.peers} is missing; see this file's docstring)")
                continue
            with start_peer(args.peers, paths, repository) as address:
                for name in args.models:
                    infer = f"/v2/models/{name}/infer"
                    got = posted(address, infer, json_requests[name], references[name], 16, seconds)
                    results["models"][name][peer] = got
                    ours = results["models"][name]["json16"]
                    print(
                        f"{name:9} c=16 JSON: tsnative {ours['rows_per_s']:7.1f} rows/s "
                        f"p50 {ours['p50_ms']:7.2f} ms | {peer} {got['rows_per_s']:7.1f} rows/s "
                        f"p50 {got['p50_ms']:7.2f} ms",
                        flush=True,
                    )
    print("\ntargets (serve issues; gRPC's are REST's):")
    for name, rows in results["models"].items():
        for protocol, key in (("REST", "served"), ("gRPC", "grpc")):
            ratio = rows[16][key]["rows_per_s"] / rows[16]["in_process"]["rows_per_s"]
            print(
                f"  {name}: {protocol} c=16 throughput {ratio:.2f}x in-process batched "
                f"(>= 0.8): {'met' if ratio >= 0.8 else 'missed'}"
            )
        added = rows["plain1"]["p50_ms"] - rows[1]["in_process"]["p50_ms"]
        through_client = rows[1]["served"]["p50_ms"] - rows[1]["in_process"]["p50_ms"]
        print(
            f"  {name}: REST c=1 p50 in-process + {added:.2f} ms (<= 1 ms, plain client; "
            f"+ {through_client:.2f} ms through tritonclient): "
            f"{'met' if added <= 1.0 else 'missed'}"
        )
        added = rows[1]["grpc"]["p50_ms"] - rows[1]["in_process"]["p50_ms"]
        print(
            f"  {name}: gRPC c=1 p50 in-process + {added:.2f} ms (<= 1 ms, through "
            f"tritonclient.grpc): {'met' if added <= 1.0 else 'missed'}"
        )
        for peer in PEERS:
            if peer not in rows:
                print(f"  {name}: c=16 throughput >= 3x {peer}'s: not measured")
                continue
            versus = rows["json16"]["rows_per_s"] / rows[peer]["rows_per_s"]
            print(
                f"  {name}: c=16 throughput {versus:.2f}x {peer}'s (>= 3, JSON both): "
                f"{'met' if versus >= 3 else 'missed'}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
