"""ts-infer serve's model control (Triton's model repository extension) as an operator drives
it: one server for the module under --model-control explicit, over a repository the tests
change, called with Triton's own clients over REST and gRPC; then --model-control poll, and
the refusals of --model-control none (the session's server). Answers are checked against the
eager models the files were exported from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import tsnative
from serving import Served
from torch import nn

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).eval()


def write_model(model: nn.Module, path: Path) -> None:
    """Exports next to `path`, then renames over it: a reader sees the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".new.pt")
    tsnative.export(model, torch.rand(1, 6), staged, progress=False)
    os.replace(staged, path)


def eager(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


class Controlled:
    """The server, its repository, the eager models by name, and a client per protocol (for
    the thread that made them: tritonclient.http's client is gevent's, one thread's own)."""

    def __init__(self, server: tsnative.Server, repository: Path, models: dict) -> None:
        self.server = server
        self.repository = repository
        self.models = models
        self.http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        assert server.grpc_address is not None
        self.grpc = grpcclient.InferenceServerClient(server.grpc_address)

    def another(self) -> Controlled:
        """The same server with clients of their own, for another thread."""
        return Controlled(self.server, self.repository, self.models)

    def infer_http(self, name: str, x: np.ndarray) -> np.ndarray:
        tensor = httpclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        return self.http.infer(name, [tensor]).as_numpy("output")

    def infer_grpc(self, name: str, x: np.ndarray) -> np.ndarray:
        tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return self.grpc.infer(name, [tensor]).as_numpy("output")

    def index(self) -> dict[str, tuple[str, str, str]]:
        return {
            row["name"]: (row.get("version", ""), row.get("state", ""), row.get("reason", ""))
            for row in self.http.get_model_repository_index()
        }


@pytest.fixture(scope="module")
def controlled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controlled]:
    repository = tmp_path_factory.mktemp("controlled")
    models = {"mlp": mlp(1), "other": mlp(2)}
    for name, model in models.items():
        write_model(model, repository / name / "1" / "model.pt")
    server = tsnative.serve(
        repository,
        http_port=0,
        grpc_port=0,
        background=True,
        model_control="explicit",
        load_models=["mlp"],
    )
    assert isinstance(server, tsnative.Server)
    with server:
        server.wait_ready()
        yield Controlled(server, repository, models)
        status = server.stop()
    assert status == 0, server.log[-5:]


def test_explicit_mode_starts_with_the_named_models(controlled: Controlled) -> None:
    assert controlled.index() == {
        "mlp": ("1", "READY", ""),
        "other": ("1", "UNAVAILABLE", "not loaded"),
    }
    assert controlled.http.is_model_ready("mlp")
    assert not controlled.http.is_model_ready("other")
    assert not controlled.grpc.is_model_ready("other")
    with pytest.raises(InferenceServerException, match=r"model 'other' is not loaded \(not"):
        controlled.infer_http("other", np.zeros((1, 6), np.float32))
    rows = controlled.grpc.get_model_repository_index().models
    assert [(row.name, row.version, row.state) for row in rows] == [
        ("mlp", "1", "READY"),
        ("other", "1", "UNAVAILABLE"),
    ]
    ready_only = controlled.grpc.get_model_repository_index()
    assert ready_only  # and the "ready" filter, over raw HTTP:
    import http.client

    connection = http.client.HTTPConnection(controlled.server.url.removeprefix("http://"))
    connection.request("POST", "/v2/repository/index", body=json.dumps({"ready": True}))
    rows = json.loads(connection.getresponse().read())
    connection.close()
    assert [row["name"] for row in rows] == ["mlp"]


def test_load_and_unload_over_both_protocols(controlled: Controlled) -> None:
    x = np.random.rand(3, 6).astype(np.float32)
    controlled.http.load_model("other")
    assert controlled.grpc.is_model_ready("other")
    np.testing.assert_allclose(
        controlled.infer_grpc("other", x), eager(controlled.models["other"], x), **TOLERANCE
    )
    controlled.grpc.unload_model("other")
    assert not controlled.http.is_model_ready("other")
    assert controlled.index()["other"] == ("1", "UNAVAILABLE", "unloaded")
    with pytest.raises(InferenceServerException, match=r"model 'other' is not loaded \(unloaded\)"):
        controlled.infer_grpc("other", x)
    controlled.grpc.load_model("other")
    np.testing.assert_allclose(
        controlled.infer_http("other", x), eager(controlled.models["other"], x), **TOLERANCE
    )
    controlled.http.unload_model("other")
    assert not controlled.grpc.is_model_ready("other")
    assert any("unloaded: other" in line for line in controlled.server.log)


def test_a_model_added_after_the_start_can_be_loaded(controlled: Controlled) -> None:
    late = mlp(3)
    write_model(late, controlled.repository / "late" / "1" / "model.pt")
    assert controlled.index()["late"] == ("1", "UNAVAILABLE", "not loaded")
    controlled.http.load_model("late")
    x = np.random.rand(2, 6).astype(np.float32)
    np.testing.assert_allclose(controlled.infer_http("late", x), eager(late, x), **TOLERANCE)
    controlled.http.unload_model("late")


def test_refusals_name_the_cause(controlled: Controlled, served: Served) -> None:
    with pytest.raises(InferenceServerException, match="holds no model 'nonexistent'"):
        controlled.http.load_model("nonexistent")
    with pytest.raises(InferenceServerException, match="holds no model 'nonexistent'") as raised:
        controlled.grpc.load_model("nonexistent")
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="parameter 'config' is not supported"):
        controlled.http.load_model("mlp", config=json.dumps({"max_batch_size": 4}))
    with pytest.raises(InferenceServerException, match="parameter 'config' is not supported"):
        controlled.grpc.load_model("mlp", config=json.dumps({"max_batch_size": 4}))
    with pytest.raises(InferenceServerException, match="unknown model 'nonexistent'") as raised:
        controlled.grpc.unload_model("nonexistent")
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    # The session's server runs --model-control none: its models are fixed.
    with pytest.raises(InferenceServerException, match="only with --model-control explicit"):
        served.client.load_model("features")
    with pytest.raises(InferenceServerException, match="only with --model-control explicit"):
        served.grpc.unload_model("features")
    assert served.client.is_model_ready("features")
    rows = served.client.get_model_repository_index()
    assert {"name": "features", "version": "1", "state": "READY"} in rows


def test_reload_under_load_loses_no_request(controlled: Controlled) -> None:
    """Clients over REST and gRPC call "mlp" without pause while its file is replaced and
    reloaded, then replaced by a file that does not load: every call is answered, by the old
    model or the new; every call sent after the reload returned gets the new one; the failed
    reload leaves the new one serving, with the cause in the load's error."""
    old, new = controlled.models["mlp"], mlp(4)
    x = np.random.rand(2, 6).astype(np.float32)
    expected_old, expected_new = eager(old, x), eager(new, x)
    answers: list[tuple[float, np.ndarray]] = []
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(protocol: str) -> None:
        own = controlled.another()
        call = own.infer_http if protocol == "http" else own.infer_grpc
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                got = call("mlp", x)
            except Exception as error:  # every failure is one
                with lock:
                    failures.append(f"{type(error).__name__}: {error}")
                continue
            with lock:
                answers.append((sent, got))

    threads = [
        threading.Thread(target=client, args=(protocol,)) for protocol in ("http", "grpc") * 2
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        write_model(new, controlled.repository / "mlp" / "1" / "model.pt")
        controlled.http.load_model("mlp")
        reloaded = time.monotonic()
        time.sleep(0.5)
        broken = controlled.repository / "mlp" / "1" / "model.pt"
        broken.write_bytes(b"not a model")
        with pytest.raises(InferenceServerException) as raised:
            controlled.grpc.load_model("mlp")
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert "failed to load 'mlp'" in raised.value.message()
    assert "the versions loaded before still serve" in raised.value.message()
    assert not failures, failures[:3]
    before = [got for sent, got in answers if sent < reloaded]
    after = [got for sent, got in answers if sent > reloaded]
    assert before and after, (len(before), len(after))
    for got in before:
        assert np.allclose(got, expected_old, **TOLERANCE) or np.allclose(
            got, expected_new, **TOLERANCE
        )
    for got in after:
        np.testing.assert_allclose(got, expected_new, **TOLERANCE)
    assert controlled.index()["mlp"] == ("1", "READY", "")
    write_model(new, broken)  # the repository as it serves, for the tests after this one
    controlled.models["mlp"] = new


def test_poll_mode_follows_the_files(tmp_path: Path) -> None:
    """--model-control poll, rescanning every second: a changed file is reloaded, a new model
    loaded, a removed one unloaded, a file that fails to load logged while the old serves."""
    first, second, added = mlp(5), mlp(6), mlp(7)
    write_model(first, tmp_path / "polled" / "1" / "model.pt")
    x = np.random.rand(1, 6).astype(np.float32)
    server = tsnative.serve(
        tmp_path,
        http_port=0,
        grpc_port=None,
        background=True,
        model_control="poll",
        repository_poll_secs=1,
    )
    assert isinstance(server, tsnative.Server)
    with server:
        server.wait_ready()
        client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))

        def answer(name: str) -> np.ndarray:
            tensor = httpclient.InferInput("input", [1, 6], "FP32")
            tensor.set_data_from_numpy(x, binary_data=True)
            return client.infer(name, [tensor]).as_numpy("output")

        def eventually(check, what: str) -> None:
            deadline = time.monotonic() + 30
            while not check():
                assert time.monotonic() < deadline, f"{what} within 30 s; log: {server.log[-3:]}"
                time.sleep(0.2)

        np.testing.assert_allclose(answer("polled"), eager(first, x), **TOLERANCE)
        with pytest.raises(InferenceServerException, match="this server polls its repository"):
            client.load_model("polled")
        write_model(second, tmp_path / "polled" / "1" / "model.pt")
        eventually(lambda: np.allclose(answer("polled"), eager(second, x), **TOLERANCE), "reload")
        (tmp_path / "polled" / "1" / "model.pt").write_bytes(b"not a model")
        eventually(lambda: any("failed to load polled" in line for line in server.log), "failure")
        np.testing.assert_allclose(answer("polled"), eager(second, x), **TOLERANCE)
        write_model(added, tmp_path / "added" / "1" / "model.pt")
        eventually(lambda: client.is_model_ready("added"), "a new model")
        np.testing.assert_allclose(answer("added"), eager(added, x), **TOLERANCE)
        shutil.rmtree(tmp_path / "added")
        eventually(lambda: not client.is_model_ready("added"), "the removed model unloaded")
        status = server.stop()
    assert status == 0, server.log[-5:]


def test_load_model_needs_explicit_control(ts_infer: Path, tmp_path: Path) -> None:
    write_model(mlp(8), tmp_path / "m" / "1" / "model.pt")
    refused = subprocess.run(
        [ts_infer, "serve", tmp_path, "--load-model", "m"], capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "ts-infer serve: --load-model needs --model-control explicit (the others load every "
        "model found)"
    ]
    with pytest.raises(tsnative.ServerError, match=r"--load-model 'nope': .* holds no such model"):
        server = tsnative.serve(
            tmp_path,
            http_port=0,
            grpc_port=0,
            background=True,
            model_control="explicit",
            load_models=["nope"],
        )
        assert isinstance(server, tsnative.Server)
        server.wait_ready(timeout=60)
