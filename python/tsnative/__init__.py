"""tsnative: run TorchScript models natively through a LibTorch C++ core (and ONNX models
through ONNX Runtime, behind the same API).

import tsnative
probabilities, indices = tsnative.load("model.pt").topk(x, k=5)
y = tsnative.infer("model.onnx", x)
print(tsnative.compare(eager_model, x))  # eager vs TorchScript (each level) vs ONNX Runtime
"""

import os

import torch  # loads libtorch, which the compiled extension links against

from ._build_info import TORCH_VERSION as _BUILT_AGAINST

if torch.__version__ != _BUILT_AGAINST:
    # --no-deps: a forced reinstall with dependencies would reinstall torch too.
    raise ImportError(
        f"tsnative was compiled against torch {_BUILT_AGAINST} but torch {torch.__version__} "
        "is installed; rebuild it against this torch, from the tsnative source folder: "
        "pip install --no-build-isolation --no-deps --force-reinstall ."
    )

from ._C import (
    ArgumentError,
    InferenceError,
    InputError,
    ModelLoadError,
    ScriptObject,
    __version__,
    cpu_has_native_bf16,
    cpu_has_vnni,
    cuda_available,
    get_num_threads,
    set_num_interop_threads,
    set_num_threads,
)
from .accuracy import AccuracyReport
from .compare import Comparison, compare
from .export import ExportError, ExportWarning, export
from .formats import NAMES as FORMATS
from .images import Classification, Prediction, classify, decode_image, load_image
from .module import OPTIMIZE_LEVELS, Module, clear_cache, infer, load, load_library
from .serve import Server, ServerError, serve

#: Where CMake finds the C++ API (find_package(tsnative CONFIG) -> tsnative::core), to pass in
#: CMAKE_PREFIX_PATH beside torch.utils.cmake_prefix_path.
cmake_prefix_path = os.path.join(os.path.dirname(__file__), "share", "cmake")

__all__ = [
    "FORMATS",
    "OPTIMIZE_LEVELS",
    "AccuracyReport",
    "ArgumentError",
    "Classification",
    "Comparison",
    "ExportError",
    "ExportWarning",
    "InferenceError",
    "InputError",
    "ModelLoadError",
    "Module",
    "Prediction",
    "ScriptObject",
    "Server",
    "ServerError",
    "__version__",
    "classify",
    "clear_cache",
    "cmake_prefix_path",
    "compare",
    "cpu_has_native_bf16",
    "cpu_has_vnni",
    "cuda_available",
    "decode_image",
    "export",
    "get_num_threads",
    "infer",
    "load",
    "load_image",
    "load_library",
    "serve",
    "set_num_interop_threads",
    "set_num_threads",
]
