"""KServe's Python SDK calling a running `ts-infer serve` on the 'pair' model of tests/serving.py,
over REST (JSON and binary tensors) and gRPC, as a KServe user calls it. Run in a Python of its
own (tests/test_server.py): kserve and tritonclient.grpc register the same protobuf messages
(package inference) from different files, so one process cannot import both.

    python kserve_calls.py HTTP_URL GRPC_ADDRESS < {"a": [[...]], "b": [[...]]}

Prints one JSON object: each call's outputs by name, and the errors for an unknown model."""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


def pair_request(a: np.ndarray, b: np.ndarray, name: str, binary: bool) -> InferRequest:
    inputs = [InferInput("a", list(a.shape), "FP32"), InferInput("b", list(b.shape), "FP32")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    return InferRequest(name, inputs)


def outputs_of(response) -> dict[str, list]:
    return {output.name: output.as_numpy().tolist() for output in response.outputs}


async def rest_calls(url: str, a: np.ndarray, b: np.ndarray) -> dict[str, object]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    found: dict[str, object] = {}
    try:
        assert await client.is_server_live(url)
        assert await client.is_model_ready(url, "pair")
        for binary in (False, True):
            request = pair_request(a, b, "pair", binary)
            response = await client.infer(url, request, model_name="pair")
            found["rest binary" if binary else "rest json"] = outputs_of(response)
        try:
            await client.infer(url, pair_request(a, b, "nonexistent", False), "nonexistent")
        except httpx.HTTPStatusError as error:
            found["rest unknown"] = [error.response.status_code, error.response.json()["error"]]
    finally:
        await client.close()
    return found


async def grpc_calls(address: str, a: np.ndarray, b: np.ndarray) -> dict[str, object]:
    client = InferenceGRPCClient(address, retries=0)
    found: dict[str, object] = {}
    try:
        assert await client.is_server_ready()
        assert await client.is_model_ready("pair")
        found["grpc"] = outputs_of(await client.infer(pair_request(a, b, "pair", False)))
        try:
            await client.infer(pair_request(a, b, "nonexistent", False))
        except grpc.aio.AioRpcError as error:
            found["grpc unknown"] = [error.code().name, error.details()]
    finally:
        await client.close()
    return found


def main() -> None:
    url, address = sys.argv[1:3]
    given = json.load(sys.stdin)
    a, b = (np.array(given[name], np.float32) for name in ("a", "b"))
    found = asyncio.run(rest_calls(url, a, b))
    found.update(asyncio.run(grpc_calls(address, a, b)))
    print(json.dumps(found))


if __name__ == "__main__":
    main()
