"""Running ONNX models behind the `Module` API, in an ONNX Runtime session (written by onnx.py).

The onnxruntime wheel ships its shared library but no C/C++ headers, so this backend lives in
Python; what is not the runtime stays in the core and is shared with TorchScript: metadata
(labels, preprocessing), softmax/top-k, and image classification (decoding, preprocessing,
batching), which calls back into `OnnxModel.forward` for each batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .. import _C
from .._extras import install_hint

EXTRA = install_hint("onnx")
# The key of the metadata entry (ModelProto.metadata_props): the JSON a TorchScript archive
# carries as its extra file of the same name.
METADATA_KEY = _C.METADATA_FILE

# ONNX element types (as ONNX Runtime names them) and the torch dtypes that feed them.
_DTYPES = {
    "tensor(float)": torch.float32,
    "tensor(double)": torch.float64,
    "tensor(float16)": torch.float16,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(int16)": torch.int16,
    "tensor(int8)": torch.int8,
    "tensor(uint8)": torch.uint8,
    "tensor(bool)": torch.bool,
}


def onnxruntime(source: str) -> Any:
    """The onnxruntime module, or a ModelLoadError that names the extra to install."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise _C.ModelLoadError(
            f"{source} is an ONNX model; running it needs ONNX Runtime: {EXTRA}"
        ) from None
    return ort


def _cause(error: BaseException) -> str:
    """ONNX Runtime's message without its status prefix ("[ONNXRuntimeError] : 7 :
    INVALID_PROTOBUF : ") and the path it repeats ("Load model from PATH failed:")."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return re.sub(r"^Load model from .* failed:", "", text).strip()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _describe(arg: Any) -> str:
    """An ONNX input or output as a signature shows it: name: float32[batch, 3, 224, 224]."""
    dtype = _DTYPES.get(arg.type)
    element = _dtype_name(dtype) if dtype is not None else arg.type
    dims = ", ".join("?" if dim is None else str(dim) for dim in arg.shape or [])
    return f"{arg.name}: {element}[{dims}]"


class OnnxModel:
    """An ONNX Runtime session with the interface `Module` calls (that of the core's Model)."""

    def __init__(self, session: Any, source: str, path: str, device: str) -> None:
        self._session = session
        self._inputs = session.get_inputs()
        self._outputs = session.get_outputs()
        self.source = source
        self.path = path
        self.device = device
        props = session.get_modelmeta().custom_metadata_map
        self.metadata = (
            _C.Metadata.from_json(props[METADATA_KEY], source)
            if METADATA_KEY in props
            else _C.Metadata()
        )
        import onnxruntime as ort

        self.optimization = (
            f"ONNX Runtime {ort.__version__} ({session.get_providers()[0]}; its own graph "
            "optimizations, all levels)"
        )

    @staticmethod
    def load(model: str | bytes, source: str, path: str, device: str, optimize: str) -> OnnxModel:
        """A session on `model` (a path, or the file's bytes); errors name `source`."""
        if optimize != "none":
            raise ValueError(
                f"optimize={optimize!r} is for TorchScript models: ONNX Runtime optimizes the "
                f"graph of {source} itself; load it with optimize='none'"
            )
        ort = onnxruntime(source)
        providers = _providers(ort, device, source)
        options = ort.SessionOptions()
        options.intra_op_num_threads = _C.get_num_threads()
        options.log_severity_level = 4  # its errors come back as exceptions, said once, here
        try:
            session = ort.InferenceSession(model, options, providers=providers)
        except Exception as error:  # onnxruntime's exceptions derive from Exception only
            cause = _cause(error)
            if "protobuf parsing failed" in cause.lower() or "No graph" in cause:
                raise _C.ModelLoadError(
                    f"{source} is not a readable ONNX model (truncated or corrupt?): {cause}"
                ) from None
            hint = ""
            if "opset" in cause.lower():
                hint = (
                    f" (this ONNX Runtime, {ort.__version__}, lacks the opset it needs: export "
                    "with a lower opset_version, or upgrade onnxruntime)"
                )
            raise _C.ModelLoadError(f"cannot load {source}: {cause}{hint}") from None
        return OnnxModel(session, source, path, device)

    # --- what Module calls ---------------------------------------------------------------

    @property
    def methods(self) -> list[str]:
        return ["forward"]

    def has_method(self, name: str) -> bool:
        return name == "forward"

    def signature(self, method: str) -> str:
        self._check_method(method)
        inputs = ", ".join(f"Tensor {_describe(arg)}" for arg in self._inputs)
        outputs = ", ".join(f"Tensor {_describe(arg)}" for arg in self._outputs)
        return f"forward({inputs}) -> ({outputs})"

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._check_method(method)
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the session; one output is a tensor, several a tuple (in the model's order)."""
        feed = self._feed(args, kwargs)
        try:
            outputs = self._session.run(None, feed)  # releases the GIL while it runs
        except Exception as error:
            raise _C.InferenceError(
                f"forward() failed in ONNX Runtime on {self.source}: {_cause(error)}"
            ) from None
        tensors = tuple(torch.from_numpy(np.asarray(output)) for output in outputs)
        return tensors[0] if len(tensors) == 1 else tensors

    def topk(self, k: int | None, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return _C.softmax_topk(self.forward(*args, **kwargs), k)

    def classify(
        self,
        paths: Sequence[str],
        options: _C.ClassifyOptions,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[_C.Classification]:
        return _C.classify_batches(self.forward, self.metadata, list(paths), options, progress)

    def named_parameters(self) -> Any:
        raise self._unsupported("named_parameters()")

    def named_buffers(self) -> Any:
        raise self._unsupported("named_buffers()")

    def attributes(self) -> Any:
        raise self._unsupported("attributes")

    # --- checks ----------------------------------------------------------------------------

    def _unsupported(self, feature: str) -> Exception:
        """What a TorchScript model has and an ONNX one does not: said in this one place."""
        return _C.InferenceError(
            f"{feature} is for TorchScript models; {self.source} is an ONNX model (a graph of "
            "operators, no module attributes): load the .pt file to read them"
        )

    def _check_method(self, method: str) -> None:
        if method != "forward":
            raise _C.InferenceError(
                f"{self.source} has no method {method!r}: an ONNX model has only forward"
            )

    def _feed(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
        """forward's arguments by input name, each checked against the model's input."""
        names = [arg.name for arg in self._inputs]
        if len(args) > len(names):
            raise self._argument_error(
                f"forward() takes {len(names)} argument(s) but {len(args)} were given"
            )
        bound = dict(zip(names, args, strict=False))
        for name, value in kwargs.items():
            if name not in names:
                raise self._argument_error(f"forward() got an unexpected keyword argument {name!r}")
            if name in bound:
                raise self._argument_error(f"forward() got multiple values for argument {name!r}")
            bound[name] = value
        missing = [name for name in names if name not in bound]
        if missing:
            raise self._argument_error(f"forward() is missing argument(s) {', '.join(missing)}")
        return {arg.name: self._checked(arg, bound[arg.name]) for arg in self._inputs}

    def _checked(self, arg: Any, value: Any) -> np.ndarray:
        if not isinstance(value, torch.Tensor):
            raise self._argument_error(
                f"argument {arg.name!r} must be a Tensor, not {type(value).__name__}"
            )
        want = _DTYPES.get(arg.type)
        if want is not None and value.dtype != want:
            raise self._argument_error(
                f"argument {arg.name!r} must be {_dtype_name(want)}, got {_dtype_name(value.dtype)}"
            )
        shape = arg.shape or []
        if len(shape) != value.dim():
            raise self._argument_error(
                f"argument {arg.name!r} must have {len(shape)} dimension(s), got {value.dim()} "
                f"(shape {list(value.shape)})"
            )
        for axis, (size, wanted) in enumerate(zip(value.shape, shape, strict=True)):
            if isinstance(wanted, int) and size != wanted:
                raise self._argument_error(
                    f"argument {arg.name!r} has size {size} in dimension {axis}, where the model "
                    f"takes {wanted} (shape {list(value.shape)})"
                )
        return value.detach().cpu().contiguous().numpy()

    def _argument_error(self, message: str) -> Exception:
        return _C.ArgumentError(f"{message}. {self.source}: {self.signature('forward')}")


def _providers(ort: Any, device: str, source: str) -> list[Any]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match is None:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', not {device!r}")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise _C.ModelLoadError(
            f"cannot load {source} on {device}: this ONNX Runtime has no CUDA provider "
            "(install onnxruntime-gpu)"
        )
    return [("CUDAExecutionProvider", {"device_id": int(match.group(1) or 0)})]


def load(model: str | bytes, source: str, path: str, device: str, optimize: str) -> OnnxModel:
    """What every runner has (formats.py): the model, with the interface of the core's Model."""
    return OnnxModel.load(model, source, path, device, optimize)
