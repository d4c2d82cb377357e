"""Soak: `ts-infer serve`'s resident memory over a long run of good and bad requests. A small
MLP (so that many requests pass: a leak per request shows), 16 in flight through Triton's
client (binary and JSON in turn, dynamically batched), and between them every kind of bad
request a client sends (malformed JSON, a wrong shape, an unknown model, truncated binary
data, an oversized body). Prints the server's RSS over time and the target of the serve issue:
RSS flat, i.e. at the end within max(5 %, 8 MiB) of where it stood after warm-up. Every good
answer is checked against eager. Loopback only; stops after --seconds or --max-requests.

    .venv/bin/python benchmarks/soak.py [--seconds 300]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import tsnative
from serving import cpu_name
from torch import nn

IN_FLIGHT = 16


def bad_requests(input_name: str) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """What a client gets wrong: each kind's path, body and headers."""
    wrong_shape = {"name": input_name, "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
    truncated = {
        "name": input_name,
        "shape": [1, 64],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 256},
    }
    header = json.dumps({"inputs": [truncated]}).encode()
    return {
        "malformed JSON": ("/v2/models/mlp/infer", b'{"inputs": [', {}),
        "wrong shape": ("/v2/models/mlp/infer", json.dumps({"inputs": [wrong_shape]}).encode(), {}),
        "unknown model": ("/v2/models/nonexistent/infer", b'{"inputs": []}', {}),
        "truncated binary": (
            "/v2/models/mlp/infer",
            header + bytes(100),
            {"Inference-Header-Content-Length": str(len(header))},
        ),
        "oversized body": ("/v2/models/mlp/infer", bytes(2 << 20), {}),
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    args = parser.parse_args()
    import tritonclient.http as httpclient

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    print(f"CPU: {cpu_name()}; client and server share it")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "mlp.pt"
        tsnative.export(model, torch.rand(1, 64), path, progress=False)
        server = tsnative.serve(
            path,
            http_port=0,
            grpc_port=0,
            background=True,
            max_batch_size=IN_FLIGHT,
            max_request_bytes=1 << 20,
            log_level="error",
        )
        assert isinstance(server, tsnative.Server)
        with server:
            server.wait_ready()
            address = server.url.removeprefix("http://")
            client = httpclient.InferenceServerClient(address, concurrency=IN_FLIGHT)
            input_name = client.get_model_metadata("mlp")["inputs"][0]["name"]
            kinds = bad_requests(input_name)
            inputs = np.random.rand(IN_FLIGHT, 1, 64).astype(np.float32)
            with torch.no_grad():
                expected = [model(torch.from_numpy(x)).numpy() for x in inputs]

            def request(index: int):
                tensor = httpclient.InferInput(input_name, [1, 64], "FP32")
                binary = index % 2 == 0
                tensor.set_data_from_numpy(inputs[index % IN_FLIGHT], binary_data=binary)
                output = httpclient.InferRequestedOutput("output", binary_data=binary)
                return index, client.async_infer("mlp", [tensor], outputs=[output])

            bad = itertools.cycle(kinds.items())
            refused = dict.fromkeys(kinds, 0)

            def send_bad() -> None:
                kind, (url, body, headers) = next(bad)
                connection = http.client.HTTPConnection(address, timeout=30)
                try:
                    connection.request("POST", url, body=body, headers=headers)
                    status = connection.getresponse().status
                except (ConnectionError, http.client.HTTPException):
                    status = 413  # an oversized body may be cut off while it is sent
                finally:
                    connection.close()
                if not 400 <= status < 500:
                    raise RuntimeError(f"{kind}: status {status}, not a 4xx")
                refused[kind] += 1

            def run(seconds: float, limit: int) -> int:
                counter = itertools.count()
                in_flight = [request(next(counter)) for _ in range(IN_FLIGHT)]
                done = 0
                start = time.monotonic()
                while in_flight:
                    index, pending = in_flight.pop(0)
                    got = pending.get_result(timeout=120).as_numpy("output")
                    np.testing.assert_allclose(got, expected[index % IN_FLIGHT], rtol=1e-5)
                    done += 1
                    if done % 50 == 0:
                        send_bad()
                    if time.monotonic() - start < seconds and done + len(in_flight) < limit:
                        in_flight.append(request(next(counter)))
                return done

            run(10, 5000)  # warm-up: allocator caches and thread pools settle
            baseline = rss_mib(server.pid)
            print(f"after warm-up: RSS {baseline:.1f} MiB")
            samples = []
            total = 0
            start = time.monotonic()
            step = max(args.seconds / 10, 1)
            while time.monotonic() - start < args.seconds and total < args.max_requests:
                total += run(step, args.max_requests - total)
                samples.append(rss_mib(server.pid))
                print(
                    f"  {time.monotonic() - start:6.0f} s  {total:8d} requests  "
                    f"RSS {samples[-1]:7.1f} MiB",
                    flush=True,
                )
            client.close()
            still_serving = server.running
        status = server.stop()
    growth = samples[-1] - baseline
    allowed = max(0.05 * baseline, 8.0)
    print(f"bad requests refused with a 4xx: {refused}")
    print(f"server running to the end: {still_serving}; clean shutdown: {status == 0}")
    print("\ntarget (serve issue):")
    print(
        f"  RSS flat over {total} requests: {baseline:.1f} -> {samples[-1]:.1f} MiB "
        f"(max {max(samples):.1f}; growth {growth:+.1f} <= {allowed:.1f} MiB): "
        f"{'met' if growth <= allowed and still_serving and status == 0 else 'missed'}"
    )


if __name__ == "__main__":
    main()
