"""tsnative: run TorchScript models natively through a LibTorch C++ core.

import tsnative
probabilities, indices = tsnative.load("model.pt").topk(x, k=5)
y = tsnative.infer("model.pt", x)
"""

import torch  # loads libtorch, which the compiled extension links against

from ._build_info import TORCH_VERSION as _BUILT_AGAINST

if torch.__version__ != _BUILT_AGAINST:
    raise ImportError(
        f"tsnative was compiled against torch {_BUILT_AGAINST} but torch {torch.__version__} "
        "is installed; reinstall one to match the other "
        "(pip install --no-build-isolation --force-reinstall tsnative)"
    )

from ._C import (
    ArgumentError,
    InferenceError,
    InputError,
    ModelLoadError,
    __version__,
    cuda_available,
    get_num_threads,
    set_num_threads,
)
from .module import Module, clear_cache, infer, load

__all__ = [
    "ArgumentError",
    "InferenceError",
    "InputError",
    "ModelLoadError",
    "Module",
    "__version__",
    "clear_cache",
    "cuda_available",
    "get_num_threads",
    "infer",
    "load",
    "set_num_threads",
]
