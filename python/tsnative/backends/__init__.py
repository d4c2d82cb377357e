"""Each format's Python side, one module per job: the writers (``torchscript.py``, ``aoti.py``,
``onnx.py``: eager model -> file), and a runner where the C++ core does not run the format
(``onnx_runner.py``: ONNX Runtime behind the same Module). Which module does what for which
format is the table in ``tsnative/formats.py``.

Every writer has the same entry point, which export() calls:

    write(model, example, path, metadata, options) -> Written

It writes `model` (eval mode) to `path` with `metadata` (a _C.Metadata it completes with
export_method), and raises WriteFailure with the cause if the format cannot hold the model.
export() then verifies the file against eager and words the failure for the user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class WriteFailure(Exception):
    """The format cannot hold the model; the message is the cause, in a sentence."""


@dataclass(frozen=True)
class ExportOptions:
    """What export() was asked, as the writers read it."""

    method: str = "auto"  # TorchScript's: "auto", "script" or "trace"
    dynamic_batch: bool = True  # torch.export's formats: the first dimension dynamic
    progress: bool | None = None  # long compiles show their stages (None: when stderr is a tty)
    name: str = ""  # how progress lines call the file
    quantize: str | None = None  # AOTInductor's: "int8", or None for the model's own precision
    calibration: tuple[tuple[Any, ...], ...] = ()  # int8's calibration batches (argument tuples)
    keep_float: tuple[str, ...] = ()  # int8's: names of the submodules left in float32
    static_batches: tuple[int, ...] = ()  # AOTInductor's: batch sizes compiled alone as well


@dataclass(frozen=True)
class Written:
    """What a writer says of the file it wrote."""

    how: str  # how messages call the written model: "scripted", "traced", "AOTInductor"
    hint: str = ""  # what to do if it does not match eager (a trace's frozen branches)
    untrusted: str = ""  # why a match on the inputs tried may not hold on others ("": it does)
    # What to say once the file is in place (TorchScript's successor, where torch deprecates it).
    after: Callable[[], None] | None = None
