"""The server the serving tests share: a Triton-style repository of .pt and .pt2 models served
once per session by `ts-infer serve` (tsnative.serve) on free HTTP and gRPC ports, with the
eager models its answers are checked against and Triton's own clients for both protocols."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import tsnative
from torch import nn


class Features(nn.Module):
    """A small MLP: 6 features in, 4 scores out, any batch."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Pair(nn.Module):
    """Two inputs, two outputs: their sum and each row's dot product."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, (a * b).sum(1)


class Lookup(nn.Module):
    """int64 token ids in: an embedding's mean per row (an input that is not float)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids).mean(1)


class Shifted(nn.Module):
    """One required argument and one with a default: served as a one-input model."""

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        return x * 2 if shift is None else x * 2 + shift


class Served:
    """The running server, the eager models by name, and a client per protocol."""

    def __init__(self, server: tsnative.Server, eager: dict[str, nn.Module]) -> None:
        import tritonclient.http

        self.server = server
        self.eager = eager
        self.address = server.url.removeprefix("http://")
        self.client = tritonclient.http.InferenceServerClient(self.address, concurrency=16)

    @cached_property
    def grpc(self) -> Any:
        """Triton's gRPC client on the server's gRPC port (made when first asked for: the
        HTTP tests do not need grpcio)."""
        import tritonclient.grpc

        assert self.server.grpc_address is not None
        return tritonclient.grpc.InferenceServerClient(self.server.grpc_address)

    def expected(self, name: str, *inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.eager[name](*inputs)

    def raw(self, method: str, path: str, body: bytes = b"", headers: dict | None = None):
        connection = http.client.HTTPConnection(self.address, timeout=30)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, data


def serve_repository(
    repository: Path, classifier: nn.Module, classifier_as: Callable[[str], Path]
) -> Iterator[Served]:
    """Writes the repository, serves it until the generator is closed, then checks that the
    server stopped cleanly and soon."""
    torch.manual_seed(0)
    eager: dict[str, nn.Module] = {
        "features": Features().eval(),
        "pair": Pair().eval(),
        "lookup": Lookup().eval(),
        "shifted": Shifted().eval(),
    }
    examples = {
        "features": torch.rand(1, 6),
        "pair": (torch.rand(1, 3), torch.rand(1, 3)),
        "lookup": torch.randint(0, 50, (1, 5)),
        "shifted": torch.rand(1, 2),
    }
    for name, model in eager.items():
        (repository / name / "1").mkdir(parents=True)
        method = "script" if name == "shifted" else "auto"
        tsnative.export(model, examples[name], repository / name / "1" / "model.pt", method=method)
    # Requests that arrive within 20 ms of each other share a forward call.
    (repository / "features" / "config.json").write_text(
        json.dumps({"max_batch_size": 16, "max_queue_delay_us": 20000})
    )
    # The classifier twice: version 1 TorchScript, version 2 an AOTInductor package.
    for version, format_name, file in ((1, "torchscript", "model.pt"), (2, "aoti", "model.pt2")):
        (repository / "classifier" / str(version)).mkdir(parents=True)
        (repository / "classifier" / str(version) / file).write_bytes(
            classifier_as(format_name).read_bytes()
        )
    eager["classifier"] = classifier
    # --timeout 3: a stalled client is dropped within the test's patience.
    server = tsnative.serve(
        repository, http_port=0, grpc_port=0, background=True, log_level="info", timeout=3
    )
    assert isinstance(server, tsnative.Server)
    with server:
        server.wait_ready()
        yield Served(server, eager)
        # The client's pooled connections are still open, idle: a shutdown must not wait on
        # them for more than the server's keep-alive timeout (2 s).
        started = time.monotonic()
        status = server.stop()
        stopping = time.monotonic() - started
    assert status == 0, server.log[-5:]
    assert stopping < 15, f"stopping took {stopping:.1f} s"
    assert any("stopping on SIGTERM" in line for line in server.log)
