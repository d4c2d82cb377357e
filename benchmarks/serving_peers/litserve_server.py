"""The serving benchmark's LitServe peer: a LitAPI serving a TorchScript file as a LitServe user
would (torch.jit.load, LitServe's own batching, Python on the request path), at the Open
Inference Protocol's infer path with its JSON tensors, so that the same Triton client drives
it. LitServe has no OIP spec of its own: decode and encode here read and write the JSON form
of one input and one output. Each request carries one row (the benchmark's); LitServe's batch
stacks them along dim 0.

    python litserve_server.py PORT MAX_BATCH NAME=MODEL.pt [NAME=MODEL.pt ...]
"""

import sys

import litserve as ls
import torch


class TorchScriptAPI(ls.LitAPI):
    def __init__(self, path: str, name: str, max_batch_size: int) -> None:
        super().__init__(
            max_batch_size=max_batch_size,
            batch_timeout=0.002,
            api_path=f"/v2/models/{name}/infer",
        )
        self.path = path
        self.name = name

    def setup(self, device: str) -> None:
        self.model = torch.jit.load(self.path).eval()

    def decode_request(self, request: dict) -> torch.Tensor:
        tensor = request["inputs"][0]
        return torch.tensor(tensor["data"], dtype=torch.float32).reshape(tensor["shape"])

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(inputs)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x)

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output.split(1))

    def encode_response(self, output: torch.Tensor) -> dict:
        data = {"name": "output", "datatype": "FP32", "shape": list(output.shape)}
        return {"model_name": self.name, "outputs": [{**data, "data": output.flatten().tolist()}]}


if __name__ == "__main__":
    port, max_batch, *models = sys.argv[1:]
    apis = [
        TorchScriptAPI(path, name, int(max_batch))
        for name, path in (model.split("=", 1) for model in models)
    ]
    server = ls.LitServer(apis, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(port), generate_client_file=False, log_level="warning")
