"""ts-infer serve over gRPC (inference.GRPCInferenceService) as Triton's own client,
tritonclient.grpc, drives it: the session's server (tests/serving.py), the same models the REST
tests call. Every answer is checked against the eager model; where the client cannot send
something (typed contents, malformed messages), Triton's generated stub sends it. The server is
one process holding LibTorch and the distribution's gRPC and protobuf (LibTorch bundles a
protobuf of its own): each answer here shows both live in it."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import tsnative
from conftest import TINY_LABELS, TINY_PREPROCESS
from helpers import pillow_preprocess
from serving import Served

grpcclient = pytest.importorskip("tritonclient.grpc")
grpc = pytest.importorskip("grpc")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException, np_to_triton_dtype  # noqa: E402

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def _infer(served: Served, name: str, arrays: dict[str, np.ndarray], **kwargs):
    inputs = []
    for input_name, array in arrays.items():
        tensor = grpcclient.InferInput(
            input_name, list(array.shape), np_to_triton_dtype(array.dtype)
        )
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return served.grpc.infer(name, inputs, **kwargs)


def _stub(served: Served):
    assert served.server.grpc_address is not None
    channel = grpc.insecure_channel(
        served.server.grpc_address, options=[("grpc.max_send_message_length", -1)]
    )
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _tensors(metadata) -> list[dict]:
    return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata]


def test_health_and_metadata_equal_the_rest_fronts(served: Served) -> None:
    client = served.grpc
    assert client.is_server_live()
    assert client.is_server_ready()
    server = client.get_server_metadata()
    assert server.name == "tsnative"
    assert server.version == tsnative.__version__
    assert {"binary_tensor_data", "classification"} <= set(server.extensions)
    features = client.get_model_metadata("features")
    assert _tensors(features.inputs) == [{"name": "x", "datatype": "FP32", "shape": [-1, 6]}]
    for name in ("features", "pair", "lookup", "shifted", "classifier"):
        for version in ("", "1"):
            rest = served.client.get_model_metadata(name, version)
            rpc = client.get_model_metadata(name, version)
            assert rpc.name == rest["name"]
            assert list(rpc.versions) == rest["versions"]
            assert rpc.platform == rest["platform"]
            assert _tensors(rpc.inputs) == rest["inputs"]
            assert _tensors(rpc.outputs) == rest["outputs"]
    assert client.get_model_metadata("classifier").platform == "aoti"
    assert client.is_model_ready("classifier", "2")
    # Unknown models and versions are not ready (as Triton answers), not an error.
    assert not client.is_model_ready("nonexistent")
    assert not client.is_model_ready("classifier", "7")


def test_raw_contents_match_eager(served: Served) -> None:
    x = torch.rand(3, 6)
    result = _infer(served, "features", {"x": x.numpy()})
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected("features", x), **TOLERANCE
    )
    ids = torch.randint(0, 50, (2, 5))
    result = _infer(served, "lookup", {"ids": ids.numpy()})
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected("lookup", ids), **TOLERANCE
    )
    x = torch.rand(4, 2)
    result = _infer(served, "shifted", {"x": x.numpy()})
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected("shifted", x), **TOLERANCE
    )


def test_two_inputs_two_outputs(served: Served) -> None:
    a, b = torch.rand(2, 3), torch.rand(2, 3)
    outputs = [grpcclient.InferRequestedOutput("output_1")]
    result = _infer(served, "pair", {"a": a.numpy(), "b": b.numpy()}, request_id="r7")
    total, dot = served.expected("pair", a, b)
    np.testing.assert_allclose(result.as_numpy("output_0"), total, **TOLERANCE)
    np.testing.assert_allclose(result.as_numpy("output_1"), dot, **TOLERANCE)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("pair", "1", "r7")
    only = _infer(served, "pair", {"a": a.numpy(), "b": b.numpy()}, outputs=outputs)
    assert [output.name for output in only.get_response().outputs] == ["output_1"]
    np.testing.assert_allclose(only.as_numpy("output_1"), dot, **TOLERANCE)


@pytest.mark.parametrize("version", ["1", "2"], ids=["pt", "pt2"])
def test_package_and_archive_agree_with_eager(served: Served, version: str) -> None:
    x = torch.rand(2, 3, 40, 40)
    name = served.grpc.get_model_metadata("classifier", version).inputs[0].name
    result = _infer(served, "classifier", {name: x.numpy()}, model_version=version)
    assert result.get_response().model_version == version
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected("classifier", x), rtol=1e-4, atol=1e-4
    )


def _typed_request(name: str, **inputs: tuple[str, list[int], dict]) -> object:
    """A ModelInferRequest with each input's elements in InferTensorContents' typed fields
    (what tritonclient never sends, and other clients do)."""
    request = service_pb2.ModelInferRequest(model_name=name)
    for input_name, (datatype, shape, contents) in inputs.items():
        tensor = request.inputs.add(name=input_name, datatype=datatype, shape=shape)
        for field, values in contents.items():
            getattr(tensor.contents, field).extend(values)
    return request


def _raw_outputs(response) -> dict[str, np.ndarray]:
    dtypes = {"FP32": np.float32, "INT64": np.int64}
    return {
        output.name: np.frombuffer(raw, dtypes[output.datatype]).reshape(list(output.shape))
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }


def test_typed_contents_match_eager(served: Served) -> None:
    stub = _stub(served)
    x = torch.rand(2, 6)
    request = _typed_request("features", x=("FP32", [2, 6], {"fp32_contents": x.flatten()}))
    outputs = _raw_outputs(stub.ModelInfer(request, timeout=30))
    np.testing.assert_allclose(outputs["output"], served.expected("features", x), **TOLERANCE)
    ids = torch.randint(0, 50, (3, 5))
    request = _typed_request(
        "lookup", ids=("INT64", [3, 5], {"int64_contents": ids.flatten().tolist()})
    )
    outputs = _raw_outputs(stub.ModelInfer(request, timeout=30))
    np.testing.assert_allclose(outputs["output"], served.expected("lookup", ids), **TOLERANCE)
    a, b = torch.rand(2, 3), torch.rand(2, 3)
    request = _typed_request(
        "pair",
        a=("FP32", [2, 3], {"fp32_contents": a.flatten()}),
        b=("FP32", [2, 3], {"fp32_contents": b.flatten()}),
    )
    outputs = _raw_outputs(stub.ModelInfer(request, timeout=30))
    total, dot = served.expected("pair", a, b)
    np.testing.assert_allclose(outputs["output_0"], total, **TOLERANCE)
    np.testing.assert_allclose(outputs["output_1"], dot, **TOLERANCE)


@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
def test_classification_of_encoded_images(served: Served, photo_dir: Path, typed: bool) -> None:
    """JPEG and PNG files as BYTES (raw, or in bytes_contents), decoded and preprocessed by
    the server, classified top-2: the top class and its score equal the eager model's on
    Pillow's preprocessing."""
    photos = sorted(photo_dir.iterdir())
    files = [path.read_bytes() for path in photos]
    name = served.grpc.get_model_metadata("classifier").inputs[0].name
    if typed:
        request = _typed_request(
            "classifier", **{name: ("BYTES", [len(files)], {"bytes_contents": files})}
        )
        output = request.outputs.add(name="output")
        output.parameters["classification"].int64_param = 2
        response = _stub(served).ModelInfer(request, timeout=60)
        answers = grpcclient.InferResult(response).as_numpy("output")
    else:
        image_input = grpcclient.InferInput(name, [len(files)], "BYTES")
        image_input.set_data_from_numpy(np.array(files, dtype=np.object_))
        output = grpcclient.InferRequestedOutput("output", class_count=2)
        answers = served.grpc.infer("classifier", [image_input], outputs=[output]).as_numpy(
            "output"
        )
    assert answers.shape == (len(photos), 2)
    batch = torch.stack([pillow_preprocess(path, **TINY_PREPROCESS) for path in photos])
    logits = served.expected("classifier", batch)
    for row, answer in enumerate(answers):
        value, index, label = answer[0].decode().split(":", 2)
        expected = int(logits[row].argmax())
        assert int(index) == expected
        assert label == TINY_LABELS[expected]
        assert float(value) == pytest.approx(float(logits[row, expected]), abs=1e-3)


def _status(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status(), raised.value.message()


def test_client_errors_have_the_status_code_and_name_the_field(served: Served) -> None:
    zeros = np.zeros((1, 6), np.float32)
    cases = [
        (lambda: _infer(served, "nope", {"x": zeros}), "NOT_FOUND", "unknown model 'nope'"),
        (
            lambda: _infer(served, "features", {"x": zeros}, model_version="7"),
            "NOT_FOUND",
            "has no version '7'",
        ),
        (
            lambda: _infer(served, "features", {"x": np.zeros((1, 5), np.float32)}),
            "INVALID_ARGUMENT",
            r"input 'x' has shape \[1, 5\]",
        ),
        (
            lambda: _infer(served, "lookup", {"ids": np.zeros((1, 5), np.float32)}),
            "INVALID_ARGUMENT",
            "input 'ids' must be INT64, got FP32",
        ),
        (
            lambda: _infer(served, "features", {"y": zeros}),
            "INVALID_ARGUMENT",
            "unknown input 'y'",
        ),
        (
            lambda: _infer(
                served, "features", {"x": zeros}, outputs=[grpcclient.InferRequestedOutput("s")]
            ),
            "INVALID_ARGUMENT",
            "unknown output 's'",
        ),
    ]
    for call, code, message in cases:
        status, said = _status(call)
        assert status == f"StatusCode.{code}", said
        assert re.search(message, said), said


MALFORMED = [
    (
        "too few typed elements",
        {"x": ("FP32", [1, 6], {"fp32_contents": [1.0, 2.0]})},
        "input 'x': fp32_contents has 2 elements, its shape 6",
    ),
    (
        "a value out of its datatype's range",
        {"x": ("INT8", [1, 2], {"int_contents": [1, 300]})},
        "input 'x': 300 is out of INT8's range",
    ),
    (
        "FP16 in typed contents",
        {"x": ("FP16", [1, 6], {})},
        "FP16 has no typed contents: send it in raw_input_contents",
    ),
    ("an unknown datatype", {"x": ("FP33", [1, 6], {})}, "unknown datatype 'FP33'"),
    ("a negative size", {"x": ("FP32", [-1, 6], {})}, "'shape' must hold sizes >= 0, got -1"),
]


@pytest.mark.parametrize(
    "inputs,message", [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_messages_are_invalid_arguments(
    served: Served, inputs: dict, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _stub(served).ModelInfer(_typed_request("features", **inputs), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


def test_raw_contents_must_be_one_per_input_and_fill_it(served: Served) -> None:
    stub = _stub(served)
    a = np.zeros((1, 3), np.float32)
    request = _typed_request("pair", a=("FP32", [1, 3], {}), b=("FP32", [1, 3], {}))
    request.raw_input_contents.append(a.tobytes())
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1 raw_input_contents for 2 inputs" in raised.value.details()
    request.raw_input_contents.append(a.tobytes()[:8])
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request, timeout=30)
    assert "input 'b': 8 bytes of data, its shape and datatype take 12" in raised.value.details()
    both = _typed_request("features", x=("FP32", [1, 6], {"fp32_contents": [0.0] * 6}))
    both.raw_input_contents.append(np.zeros(6, np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(both, timeout=30)
    assert "input 'x': has both contents and raw_input_contents" in raised.value.details()


def test_an_oversized_message_is_refused_and_the_server_goes_on(served: Served) -> None:
    """A message over --max-request-bytes (64 MiB by default) gets RESOURCE_EXHAUSTED."""
    rows = (65 << 20) // 24
    status, said = _status(
        lambda: _infer(served, "features", {"x": np.zeros((rows, 6), np.float32)})
    )
    assert status == "StatusCode.RESOURCE_EXHAUSTED"
    assert "larger than max" in said
    assert served.grpc.is_server_ready()
    x = torch.rand(1, 6)
    result = _infer(served, "features", {"x": x.numpy()})
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected("features", x), **TOLERANCE
    )


def _metric(served: Served, name: str) -> float:
    status, body = served.raw("GET", "/metrics")
    assert status == 200
    line = f'{name}{{model="features",version="1"}} '
    found = [row for row in body.decode().splitlines() if row.startswith(line)]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


def test_concurrent_calls_share_the_batcher_and_the_metrics(served: Served) -> None:
    """16 calls at once of 1 to 3 rows (the client's async_infer): every answer equal to the
    eager model's on that call alone, fewer forward calls than calls, and the calls counted
    in /metrics beside the REST ones."""
    rows = [1 + i % 3 for i in range(16)]
    inputs = [torch.rand(n, 6) for n in rows]
    before = {
        name: _metric(served, name)
        for name in (
            "nv_inference_request_success",
            "nv_inference_exec_count",
            "nv_inference_count",
        )
    }
    answers: dict[int, object] = {}
    done = threading.Semaphore(0)

    def finished(index: int):
        def callback(result, error) -> None:
            answers[index] = error if error is not None else result.as_numpy("output")
            done.release()

        return callback

    for index, x in enumerate(inputs):
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x.numpy())
        served.grpc.async_infer("features", [tensor], callback=finished(index))
    for _ in inputs:
        assert done.acquire(timeout=60)
    for index, x in enumerate(inputs):
        assert isinstance(answers[index], np.ndarray), answers[index]
        np.testing.assert_allclose(answers[index], served.expected("features", x), **TOLERANCE)
    after = {name: _metric(served, name) for name in before}
    assert after["nv_inference_request_success"] - before["nv_inference_request_success"] == 16
    assert after["nv_inference_count"] - before["nv_inference_count"] == sum(rows)
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    assert executions < 16, f"{executions} forward calls for 16 requests"


def test_one_log_line_per_call(served: Served) -> None:
    _infer(served, "features", {"x": np.zeros((1, 6), np.float32)})
    assert any(re.search(r"gRPC ModelInfer features OK$", line) for line in served.server.log)
    _status(lambda: _infer(served, "nope", {"x": np.zeros((1, 6), np.float32)}))
    assert any(
        re.search(r"gRPC ModelInfer nope NOT_FOUND unknown model 'nope'", line)
        for line in served.server.log
    )
