"""Loading models and calling them: `load`, `Module`, and the cached one-shot `infer`."""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from typing import Any

import torch

from . import _C

PathLike = str | os.PathLike[str]


class Module:
    """A TorchScript model loaded by the native core: eval mode, autograd off, one device.

    Call it like the eager model (``m(x)``); other methods by name (``m.call("encode", x)``
    or ``m.encode(x)``). Safe to call from many threads at once; the GIL is released while
    the model runs. Returned tensors are ordinary tensors that do not require grad.
    """

    def __init__(self, model: _C.Model) -> None:
        self._model = model

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._model.call("forward", *args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the model's ``forward``."""
        return self._model.call("forward", *args, **kwargs)

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Runs the named method (``forward`` or one marked ``@torch.jit.export``)."""
        return self._model.call(method, *args, **kwargs)

    def topk(self, *args: Any, k: int = 5, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs ``forward`` and returns (probabilities, indices) of the k most likely classes.

        Softmax is taken over the last dimension; k is clamped to the number of classes.
        """
        return self._model.topk(k, *args, **kwargs)

    def signature(self, method: str = "forward") -> str:
        """The TorchScript signature of a method, e.g. ``forward(Tensor x) -> Tensor``."""
        return self._model.signature(method)

    @property
    def methods(self) -> list[str]:
        """The names of the methods that can be called, sorted."""
        return self._model.methods

    @property
    def path(self) -> str:
        return self._model.path

    @property
    def device(self) -> torch.device:
        return torch.device(self._model.device)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not Python attributes: treat them as model methods.
        if name.startswith("_") or not self._model.has_method(name):
            raise AttributeError(
                f"{type(self).__name__} for {self._model.path!r} has no attribute or method "
                f"{name!r} (methods: {', '.join(self._model.methods)})"
            )
        return functools.partial(self._model.call, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._model.methods))

    def __repr__(self) -> str:
        return f"tsnative.Module({self._model.path!r}, device={self._model.device!r})"


def load(path: PathLike, device: str = "cpu") -> Module:
    """Loads a TorchScript file onto ``device`` ("cpu", "cuda", "cuda:N").

    Raises ModelLoadError with the cause (missing file, not TorchScript, saved by a newer
    PyTorch, device unavailable) and ValueError for a malformed device string.
    """
    options = _C.LoadOptions()
    options.device = device
    return Module(_C.Model.load(os.fspath(path), options))


_CACHE_SIZE = 16
_cache: OrderedDict[tuple[str, str], tuple[tuple[int, int], Module]] = OrderedDict()
_cache_lock = threading.Lock()


def _cached_load(path: PathLike, device: str) -> Module:
    real_path = os.path.realpath(os.fspath(path))
    try:
        stat = os.stat(real_path)
    except OSError:
        return load(path, device)  # the core reports the missing file with its own message
    key, stamp = (real_path, device), (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[0] == stamp:
            _cache.move_to_end(key)
            return entry[1]
    module = load(real_path, device)
    with _cache_lock:
        _cache[key] = (stamp, module)
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return module


def infer(path: PathLike, *inputs: Any, device: str = "cpu") -> Any:
    """Runs a model's ``forward`` on ``inputs`` and returns its output.

    The loaded model is cached by (path, device) and reloaded when the file's modification
    time or size changes, so calling this in a loop does not reload the model.
    """
    return _cached_load(path, device)(*inputs)


def clear_cache() -> None:
    """Forgets every model `infer` has cached."""
    with _cache_lock:
        _cache.clear()
