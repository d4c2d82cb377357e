"""Loading models and calling them: `load`, `Module`, and the cached one-shot `infer`."""

from __future__ import annotations

import functools
import os
import stat
import threading
from collections import OrderedDict
from typing import Any, BinaryIO, Literal

import torch

from . import _C, formats
from .accuracy import AccuracyReport
from .backends import onnx_runner

PathLike = str | os.PathLike[str]


class Module:
    """A model loaded by the native core (TorchScript: eval mode, autograd off, one device), or
    an ONNX model run by ONNX Runtime behind the same API (see tsnative.load).

    Call it like the eager model (``m(x)``); other methods by name (``m.call("encode", x)``
    or ``m.encode(x)``). Safe to call from many threads at once; the GIL is released while
    the model runs. Returned tensors are ordinary tensors that do not require grad.
    """

    def __init__(self, model: _C.Model | onnx_runner.OnnxModel) -> None:
        self._model = model
        # What export(quantize="int8") measured of the package it returns; None otherwise.
        self.accuracy: AccuracyReport | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._model.call("forward", *args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the model's ``forward``."""
        return self._model.call("forward", *args, **kwargs)

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Runs the named method (``forward`` or one marked ``@torch.jit.export``)."""
        return self._model.call(method, *args, **kwargs)

    def topk(
        self, *args: Any, k: int | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs ``forward`` and returns (probabilities, indices) of the k most likely classes.

        Softmax is taken over the last dimension. k unset: 5, or every class where there are
        fewer; a k larger than the number of classes is a ValueError.
        """
        return self._model.topk(k, *args, **kwargs)

    def signature(self, method: str = "forward") -> str:
        """The TorchScript signature of a method, e.g. ``forward(Tensor x) -> Tensor``."""
        return self._model.signature(method)

    def named_parameters(self) -> dict[str, torch.Tensor]:
        """The parameters by dotted name ("layer1.0.conv1.weight"), as saved: no grad, sharing
        memory with the model. An optimized model (optimize="exact" and up) has folded them
        into its graph: load it with optimize="none" to read them."""
        return dict(self._model.named_parameters())

    def named_buffers(self) -> dict[str, torch.Tensor]:
        """The buffers (BatchNorm statistics, ...) by dotted name, as named_parameters."""
        return dict(self._model.named_buffers())

    @property
    def attributes(self) -> dict[str, Any]:
        """The module's other attributes (ints, floats, strings, lists, ...) by dotted name, as
        saved; tensors and nn.Module's own bookkeeping (the training flags: always eval mode
        here; _is_full_backward_hook) are left out."""
        return self._model.attributes()

    @property
    def methods(self) -> list[str]:
        """The names of the methods that can be called, sorted."""
        return self._model.methods

    @property
    def optimization(self) -> str:
        """Which variant runs (none / exact / fast / bf16), the timings that chose it, fallback
        notes; before the first call of a model loaded without warm-up inputs, the candidates
        that call will time."""
        return self._model.optimization

    @property
    def labels(self) -> list[str]:
        """Class names carried in the model file (tsnative.export's labels); [] if none."""
        return self._model.metadata.labels

    @property
    def preprocess(self) -> dict[str, Any] | None:
        """The image preprocessing carried in the model file, or None."""
        spec = self._model.metadata.preprocess
        if spec is None:
            return None
        return {key: getattr(spec, key) for key in ("resize", "crop", "mean", "std", "color")}

    @property
    def path(self) -> str:
        """The file it was loaded from; "" for a model loaded from memory."""
        return self._model.path

    @property
    def device(self) -> torch.device:
        return torch.device(self._model.device)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not Python attributes: treat them as model methods.
        if name.startswith("_") or not self._model.has_method(name):
            raise AttributeError(
                f"{type(self).__name__} for {self._model.source} has no attribute or method "
                f"{name!r} (methods: {', '.join(self._model.methods)})"
            )
        return functools.partial(self._model.call, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._model.methods))

    def __repr__(self) -> str:
        return f"tsnative.Module({self._model.source}, device={self._model.device!r})"


#: The optimize levels, as the core lists them ("none", "exact", "fast", "bf16").
OPTIMIZE_LEVELS: tuple[str, ...] = tuple(name for name, _ in _C.optimize_levels())
Optimize = str  # one of OPTIMIZE_LEVELS (the core refuses any other with a ValueError)


Source = PathLike | bytes | bytearray | memoryview | BinaryIO


def load_library(path: str | os.PathLike[str]) -> None:
    """Loads a shared library that registers TorchScript operators (C++ ``TORCH_LIBRARY``),
    as ``torch.ops.load_library`` does: call it before loading a model that uses them.

    The operators stay registered for the life of the process. Raises ModelLoadError with the
    loader's reason (missing file, not a shared object, undefined symbol, ...).
    """
    _C.load_library(os.fspath(path))


def load(
    source: Source,
    device: str = "cpu",
    *,
    optimize: Optimize = "none",
    warmup_inputs: tuple[Any, ...] | None = None,
    cache_dir: PathLike | Literal[False] | None = None,
) -> Module:
    """Loads a TorchScript or ONNX model onto ``device`` ("cpu", "cuda", "cuda:N").

    The format is told from the file's first bytes, not its name. TorchScript runs in the C++
    core; ONNX runs in an ONNX Runtime session (the onnx extra: onnxruntime) behind the
    same Module: call, topk, labels, preprocess, signature, methods, classify. An ONNX model
    has only ``forward``, takes tensors only, returns a tensor or a tuple of them (a dict
    output comes back as its values, in order), and has no optimize levels (ONNX Runtime
    optimizes its graph itself): optimize must be "none" there.

    source: a path; the archive's bytes (``bytes``, ``bytearray`` or ``memoryview``, read in
    place without a copy), e.g. from a database or an object store; or a binary file object
    (``open(p, "rb")``, ``io.BytesIO``), read to its end.

    optimize: "none" runs the file as saved; "exact" freezes it and applies PyTorch's
    inference optimizations in float32 (outputs within float32 rounding of eager); "fast" also
    uses bfloat16 where the CPU computes it natively (AVX512-BF16 / AMX), else it is "exact";
    "bf16" runs the bfloat16 variants on any CPU (emulated, slowly, where it has no native
    bfloat16): to check a model's bfloat16 accuracy before deploying it to a CPU that has it.
    With `warmup_inputs` (a tuple of forward's arguments: tensors, numbers, strings, None, and
    tuples or lists of them; image models exported with tsnative.export have one implied) the
    model is warmed up inside load, the candidate
    variants (oneDNN Graph fusion among them, on CPU) are timed and the fastest kept: see
    `Module.optimization`. The variant is chosen on the warm-up input's shapes; a call with
    a new shape is slower (fused kernels are built for it) and later ones of it are not. Without
    warm-up inputs, the first call of forward does this on its own arguments (it takes
    seconds, as `Module.optimization` then says) and the fastest variant runs from then on.

    cache_dir: where each choice is remembered, so that loading the same model for inputs of
    the same shapes again (in any process) builds and warms up only the remembered variant,
    skipping the timing; None: $TSNATIVE_CACHE_DIR, else $XDG_CACHE_HOME/tsnative, else
    ~/.cache/tsnative; False: remember nothing.

    Raises ModelLoadError with the cause (missing file, not TorchScript, saved by a newer
    PyTorch, device unavailable) and ValueError for a malformed device or optimize level.
    """
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _C.ModelLoadError(
                f"cannot load a model from {source!r}: its read() returned "
                f"{type(data).__name__}, not bytes (open the file in binary mode, 'rb')"
            )
        source = data
    if isinstance(source, (bytes, bytearray, memoryview)):
        found = formats.sniffed(bytes(memoryview(source)[:8]))
        if found is not None and found.runner is not None:
            described = f"the {found.title} model in memory ({len(memoryview(source))} bytes)"
            return _run_in_python(
                found, bytes(source), described, "", device, optimize, warmup_inputs
            )
        return Module(
            _C.Model.load_from_memory(
                source, _load_options(device, optimize, warmup_inputs, cache_dir)
            )
        )
    path = os.fspath(source)
    found = formats.sniffed(_first_bytes(path))
    if found is not None and found.runner is not None:
        return _run_in_python(found, path, repr(path), path, device, optimize, warmup_inputs)
    return Module(_C.Model.load(path, _load_options(device, optimize, warmup_inputs, cache_dir)))


def _load_options(
    device: str,
    optimize: Optimize,
    warmup_inputs: tuple[Any, ...] | None,
    cache_dir: PathLike | Literal[False] | None,
) -> _C.LoadOptions:
    options = _C.LoadOptions()
    options.device = device
    options.optimize = optimize
    if warmup_inputs is not None:
        options.warmup_inputs = tuple(warmup_inputs)
    if cache_dir is not None:
        options.choice_cache_dir = "" if cache_dir is False else os.fspath(cache_dir)
    return options


def _first_bytes(path: str) -> bytes:
    """What tells the file's format; b"" for what is not a readable regular file (the core
    says why; opening a FIFO to look would wait for a writer)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b""
        with open(path, "rb") as file:
            return file.read(8)
    except OSError:
        return b""


def _run_in_python(
    found: formats.Format,
    model: str | bytes,
    source: str,
    path: str,
    device: str,
    optimize: Optimize,
    warmup_inputs: tuple[Any, ...] | None,
) -> Module:
    """A model of a format the core does not run (a path or the file's bytes), loaded by its
    runner (ONNX's: an ONNX Runtime session) and warmed up on `warmup_inputs` if given: its
    first run allocates its buffers, here as in the core's load."""
    runner = found.runner_module()
    assert runner is not None
    module = Module(runner.load(model, source, path, device, optimize))
    if warmup_inputs is not None:
        module(*warmup_inputs)
    return module


_CACHE_SIZE = 16
# Keyed by the file's identity (device and inode, as os.stat sees it through any symlinks),
# not its path: one stat per call, where os.path.realpath would walk every path component.
_CacheKey = tuple[int, int, str, str]
_cache: OrderedDict[_CacheKey, tuple[tuple[int, int], Module]] = OrderedDict()
_cache_lock = threading.Lock()


def _cached_load(path: PathLike, device: str, optimize: Optimize) -> Module:
    try:
        stat = os.stat(path)
    except OSError:
        return load(path, device)  # the core reports the missing file with its own message
    key, stamp = (stat.st_dev, stat.st_ino, device, optimize), (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[0] == stamp:
            _cache.move_to_end(key)
            return entry[1]
    module = load(path, device, optimize=optimize)
    with _cache_lock:
        _cache[key] = (stamp, module)
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return module


def infer(path: PathLike, *inputs: Any, device: str = "cpu", optimize: Optimize = "none") -> Any:
    """Runs a model's ``forward`` on ``inputs`` and returns its output.

    The loaded model is cached by (path, device, optimize) and reloaded when the file's
    modification time or size changes, so calling this in a loop does not reload the model.
    """
    # Straight to the binding: Module.__call__'s argument repacking is a fifth of a tiny call.
    return _cached_load(path, device, optimize)._model.call("forward", *inputs)


def clear_cache() -> None:
    """Forgets every model `infer` has cached."""
    with _cache_lock:
        _cache.clear()
