"""ts-infer serve over REST as a user drives it: the session's server (tests/serving.py) over a
Triton-style repository of .pt and .pt2 models, called with Triton's own client
(tritonclient.http), KServe's and, for what no client would send, with raw HTTP. Every answer
is checked against the eager model."""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import tsnative
from conftest import TINY_LABELS, TINY_PREPROCESS
from helpers import pillow_preprocess
from serving import Served

httpclient = pytest.importorskip("tritonclient.http")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def test_health_and_server_metadata(served: Served) -> None:
    assert served.client.is_server_live()
    assert served.client.is_server_ready()
    metadata = served.client.get_server_metadata()
    assert metadata["name"] == "tsnative"
    assert metadata["version"] == tsnative.__version__
    assert {"binary_tensor_data", "classification"} <= set(metadata["extensions"])


def test_model_metadata_comes_from_the_files(served: Served) -> None:
    features = served.client.get_model_metadata("features")
    assert features["platform"] == "torchscript"
    assert features["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 6]}]
    assert features["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}]
    lookup = served.client.get_model_metadata("lookup")
    assert lookup["inputs"] == [{"name": "ids", "datatype": "INT64", "shape": [-1, 5]}]
    classifier = served.client.get_model_metadata("classifier")
    assert classifier["versions"] == ["1", "2"]
    assert classifier["platform"] == "aoti"  # the newest version, unless one is named
    old = served.client.get_model_metadata("classifier", model_version="1")
    assert old["platform"] == "torchscript"
    for description in (classifier, old):
        assert description["inputs"][0]["datatype"] == "FP32"
        assert description["inputs"][0]["shape"] == [-1, 3, 40, 40]
        assert description["outputs"][0]["shape"] == [-1, 5]
    assert served.client.is_model_ready("classifier", "2")
    assert not served.client.is_model_ready("nonexistent")


def _infer(served: Served, name: str, arrays: dict[str, np.ndarray], binary: bool, **kwargs):
    inputs = []
    for input_name, array in arrays.items():
        datatype = {np.float32: "FP32", np.int64: "INT64"}[array.dtype.type]
        tensor = httpclient.InferInput(input_name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return served.client.infer(name, inputs, **kwargs)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_matches_eager(served: Served, binary: bool) -> None:
    x = torch.rand(3, 6)
    outputs = [httpclient.InferRequestedOutput("output", binary_data=binary)]
    result = _infer(served, "features", {"x": x.numpy()}, binary, outputs=outputs)
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected("features", x), **TOLERANCE
    )
    ids = torch.randint(0, 50, (2, 5))
    result = _infer(served, "lookup", {"ids": ids.numpy()}, binary)
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected("lookup", ids), **TOLERANCE
    )


def test_arguments_with_defaults_are_left_to_them(served: Served) -> None:
    metadata = served.client.get_model_metadata("shifted")
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
    x = torch.rand(3, 2)
    result = _infer(served, "shifted", {"x": x.numpy()}, binary=False)
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected("shifted", x), **TOLERANCE
    )


def test_two_inputs_two_outputs(served: Served) -> None:
    a, b = torch.rand(2, 3), torch.rand(2, 3)
    result = _infer(served, "pair", {"a": a.numpy(), "b": b.numpy()}, binary=True)
    total, dot = served.expected("pair", a, b)
    np.testing.assert_allclose(result.as_numpy("output_0"), total, **TOLERANCE)
    np.testing.assert_allclose(result.as_numpy("output_1"), dot, **TOLERANCE)


def test_kserves_own_clients(served: Served) -> None:
    """KServe's Python SDK, REST (JSON and binary) and gRPC, in a Python of its own (see
    tests/kserve_calls.py): every answer equals the eager model's, an unknown model is refused."""
    if importlib.util.find_spec("kserve") is None:  # not imported here: see kserve_calls.py
        pytest.skip("kserve is not installed")
    a, b = torch.rand(4, 3), torch.rand(4, 3)
    total, dot = served.expected("pair", a, b)
    script = Path(__file__).with_name("kserve_calls.py")
    called = subprocess.run(
        [sys.executable, script, served.server.url, served.server.grpc_address],
        input=json.dumps({"a": a.tolist(), "b": b.tolist()}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert called.returncode == 0, called.stderr[-2000:]
    found = json.loads(called.stdout)
    for client in ("rest json", "rest binary", "grpc"):
        np.testing.assert_allclose(found[client]["output_0"], total, **TOLERANCE)
        np.testing.assert_allclose(found[client]["output_1"], dot, **TOLERANCE)
    assert found["rest unknown"] == [404, "unknown model 'nonexistent'"]
    assert found["grpc unknown"] == ["NOT_FOUND", "unknown model 'nonexistent'"]


@pytest.mark.parametrize("version", ["1", "2"], ids=["pt", "pt2"])
def test_package_and_archive_agree_with_eager(served: Served, version: str) -> None:
    x = torch.rand(2, 3, 40, 40)
    name = served.client.get_model_metadata("classifier", version)["inputs"][0]["name"]
    result = _infer(served, "classifier", {name: x.numpy()}, True, model_version=version)
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected("classifier", x), rtol=1e-4, atol=1e-4
    )


def test_dynamic_batching_equals_unbatched(served: Served) -> None:
    """16 requests at once of 1 to 3 rows: fewer forward calls than requests, and every
    answer equal to the eager model's on that request alone."""
    rows = [1 + i % 3 for i in range(16)]
    inputs = [torch.rand(n, 6) for n in rows]
    before = _metrics(served)
    # The client's own concurrency (its connection pool, 16 here): requests in flight at once.
    pending = []
    for x in inputs:
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x.numpy(), binary_data=True)
        pending.append(served.client.async_infer("features", [tensor]))
    results = [request.get_result(timeout=60).as_numpy("output") for request in pending]
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_allclose(result, served.expected("features", x), **TOLERANCE)
    after = _metrics(served)
    key = 'model="features",version="1"'
    requests = after[f"nv_inference_request_success{{{key}}}"] - before.get(
        f"nv_inference_request_success{{{key}}}", 0
    )
    executions = after[f"nv_inference_exec_count{{{key}}}"] - before.get(
        f"nv_inference_exec_count{{{key}}}", 0
    )
    inferences = after[f"nv_inference_count{{{key}}}"] - before.get(
        f"nv_inference_count{{{key}}}", 0
    )
    assert requests == 16
    assert inferences == sum(rows)
    assert executions < requests, f"{executions} forward calls for {requests} requests"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_classification_of_encoded_images(served: Served, photo_dir: Path, binary: bool) -> None:
    """JPEG and PNG files as BYTES, decoded and preprocessed by the server: the top class and
    its score equal the eager model's on Pillow's preprocessing."""
    photos = sorted(photo_dir.iterdir())
    files = np.array([path.read_bytes() for path in photos], dtype=np.object_)
    name = served.client.get_model_metadata("classifier")["inputs"][0]["name"]
    image_input = httpclient.InferInput(name, [len(photos)], "BYTES")
    image_input.set_data_from_numpy(files, binary_data=True)
    output = httpclient.InferRequestedOutput("output", binary_data=binary, class_count=2)
    result = served.client.infer("classifier", [image_input], outputs=[output])
    answers = result.as_numpy("output")
    assert answers.shape == (len(photos), 2)
    batch = torch.stack([pillow_preprocess(path, **TINY_PREPROCESS) for path in photos])
    logits = served.expected("classifier", batch)
    for row, answer in enumerate(answers):
        text = answer[0].decode() if isinstance(answer[0], bytes) else answer[0]
        value, index, label = text.split(":", 2)
        expected = int(logits[row].argmax())
        assert int(index) == expected
        assert label == TINY_LABELS[expected]
        assert float(value) == pytest.approx(float(logits[row, expected]), abs=1e-3)


def _metrics(served: Served) -> dict[str, float]:
    status, body = served.raw("GET", "/metrics")
    assert status == 200
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_use_tritons_names(served: Served) -> None:
    _infer(served, "lookup", {"ids": torch.randint(0, 50, (1, 5)).numpy()}, binary=False)
    metrics = _metrics(served)
    key = '{model="lookup",version="1"}'
    for name in (
        "nv_inference_request_success",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_request_failure",
    ):
        assert name + key in metrics
    assert metrics["nv_inference_request_success" + key] >= 1


def test_client_errors_name_the_field(served: Served) -> None:
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        _infer(served, "nope", {"x": np.zeros((1, 6), np.float32)}, binary=False)
    with pytest.raises(InferenceServerException, match="has no version '7'"):
        _infer(served, "features", {"x": np.zeros((1, 6), np.float32)}, False, model_version="7")
    with pytest.raises(InferenceServerException, match=r"input 'x' has shape \[1, 5\]"):
        _infer(served, "features", {"x": np.zeros((1, 5), np.float32)}, binary=True)
    with pytest.raises(InferenceServerException, match="input 'ids' must be INT64, got FP32"):
        _infer(served, "lookup", {"ids": np.zeros((1, 5), np.float32)}, binary=False)
    with pytest.raises(InferenceServerException, match="unknown input 'y'"):
        _infer(served, "features", {"y": np.zeros((1, 6), np.float32)}, binary=False)
    with pytest.raises(InferenceServerException, match="unknown output 'scores'"):
        outputs = [httpclient.InferRequestedOutput("scores")]
        _infer(served, "features", {"x": np.zeros((1, 6), np.float32)}, False, outputs=outputs)


_BINARY_HEADER = json.dumps(
    {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [1, 6],
                "parameters": {"binary_data_size": 24},
            }
        ]
    }
).encode()
RAW_ERRORS = [
    (b"{not json", {}, 400, "not valid JSON"),
    (
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 6], "data": [1, 2]}]}',
        {},
        400,
        "'data' has 2 elements",
    ),
    (
        b'{"inputs": [{"name": "x", "shape": [1, 6], "data": [1, 2, 3, 4, 5, 6]}]}',
        {},
        400,
        "'datatype' is missing",
    ),
    (
        _BINARY_HEADER + b"\x00" * 10,
        {"Inference-Header-Content-Length": str(len(_BINARY_HEADER))},
        400,
        "24 but 10 bytes of binary data are left",
    ),
    (b"{}", {"Inference-Header-Content-Length": "abc"}, 400, "must be a byte count"),
]


@pytest.mark.parametrize("body,headers,status,message", RAW_ERRORS)
def test_malformed_requests_get_the_protocols_error(
    served: Served, body: bytes, headers: dict, status: int, message: str
) -> None:
    got_status, data = served.raw("POST", "/v2/models/features/infer", body, headers)
    assert got_status == status
    assert message in json.loads(data)["error"]


def test_unknown_endpoints_and_oversized_bodies(served: Served) -> None:
    status, data = served.raw("GET", "/v2/nothing/here")
    assert status == 404 and "no such endpoint" in json.loads(data)["error"]
    # Model names are looked up among the served ones, never used as paths.
    status, data = served.raw("GET", "/v2/models/..%2F..%2Fetc/ready")
    assert status == 404 and "no such endpoint" in json.loads(data)["error"]
    status, data = served.raw("GET", "/v2/models/..passwd/ready")
    assert status == 404 and "unknown model '..passwd'" in json.loads(data)["error"]
    status, data = served.raw("POST", "/v2/models/features/infer", b"x" * (65 << 20))
    assert status == 413
    assert served.client.is_server_ready()  # and it still serves


def test_64_connections_at_once(served: Served) -> None:
    """64 clients, each on its own keep-alive connection, 3 requests each, all at once."""
    inputs = [torch.rand(1, 6) for _ in range(64)]
    answers: list[list[np.ndarray]] = [[] for _ in inputs]

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(served.address, timeout=60)
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "FP32",
                        "shape": [1, 6],
                        "data": inputs[index].flatten().tolist(),
                    }
                ]
            }
        )
        for _ in range(3):
            connection.request("POST", "/v2/models/features/infer", body=body)
            reply = json.loads(connection.getresponse().read())
            answers[index].append(np.array(reply["outputs"][0]["data"], np.float32))
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for x, got in zip(inputs, answers, strict=True):
        assert len(got) == 3
        for answer in got:
            np.testing.assert_allclose(answer, served.expected("features", x)[0], **TOLERANCE)


def test_a_stalled_client_is_dropped(served: Served) -> None:
    """A body that never arrives in full: the connection is closed after --timeout (3 s),
    and the server answers others meanwhile."""
    host, port = served.address.rsplit(":", 1)
    stalled = socket.create_connection((host, int(port)), timeout=30)
    stalled.sendall(
        b"POST /v2/models/features/infer HTTP/1.1\r\nHost: x\r\n"
        b'Content-Length: 1000\r\n\r\n{"inputs"'
    )
    assert served.client.is_server_ready()
    started = time.monotonic()
    while stalled.recv(4096):  # whatever it answers, then the close
        pass
    assert time.monotonic() - started < 20
    stalled.close()


def test_one_log_line_per_request(served: Served) -> None:
    served.raw("GET", "/v2/health/live")
    assert any(re.search(r"GET /v2/health/live 200", line) for line in served.server.log)


def test_help_names_the_flags(ts_infer: Path) -> None:
    shown = subprocess.run([ts_infer, "serve", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    for flag in (
        "--http-port",
        "--grpc-port",
        "--model-control",
        "--load-model",
        "--repository-poll-secs",
        "--host",
        "--max-batch-size",
        "--max-queue-delay-us",
        "--preferred-batch-size",
        "--instances",
        "--max-request-bytes",
        "--log-level",
    ):
        assert flag in shown.stdout
    main_help = subprocess.run([ts_infer, "--help"], capture_output=True, text=True).stdout
    assert "ts-infer serve PATH" in main_help and main_help.endswith("\n")


def test_bad_paths_exit_with_one_line(tmp_path: Path, ts_infer: Path) -> None:
    missing = subprocess.run([ts_infer, "serve", tmp_path / "none"], capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"ts-infer serve: cannot serve '{tmp_path / 'none'}': no such file"
    ]
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x07")
    refused = subprocess.run([ts_infer, "serve", onnx], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "is an ONNX model, not served" in refused.stderr
    with pytest.raises(tsnative.ServerError, match="no model"):
        tsnative.serve(tmp_path, http_port=0, grpc_port=0, background=True)
