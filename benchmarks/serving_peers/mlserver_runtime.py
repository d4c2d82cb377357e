"""The serving benchmark's MLServer peer: a small custom runtime that serves a TorchScript file
as a user of MLServer would (torch.jit.load, then forward per batch, Python on the request
path). Loaded by `mlserver start` from model-settings.json ("implementation":
"torchscript_runtime.TorchScriptRuntime", "parameters": {"uri": PATH})."""

import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class TorchScriptRuntime(MLModel):
    async def load(self) -> bool:
        self._model = torch.jit.load(self.settings.parameters.uri).eval()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = torch.from_numpy(NumpyCodec.decode_input(payload.inputs[0]))
        with torch.no_grad():
            y = self._model(x)
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output("output", y.numpy())]
        )
