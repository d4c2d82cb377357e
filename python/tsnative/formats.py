"""The model formats tsnative writes and runs: one table, read by load, export, compare and the
command line's messages.

A row says what a format is called, the suffix export() tells it by, the module of
``tsnative.backends`` that runs it where the C++ core does not, and the extra its Python side
needs; its writer is ``tsnative.backends.<name>``. The core tells formats apart by their bytes
(``_C.sniff_model_format``, csrc/core/model_format.cpp), for every front end alike. A new
format is a row here, a writer (and a runner, or a backend in csrc/core/backends/) — no other
place lists formats.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from . import _C


@dataclass(frozen=True)
class Format:
    name: str  # what export(format=) and compare(formats=) take: "aoti"
    title: str  # how messages and the core's sniffer call it: "AOTInductor"
    suffix: str  # what export() tells it by: ".pt2"
    exporter: str  # what writes it underneath, for messages
    runner: str | None = None  # the module that runs it; None: the C++ core (_C.Model)
    extra: str | None = None  # the extra of pyproject.toml its Python side needs
    # Written through torch.export: tensor arguments only, the batch dimension dynamic.
    torch_export: bool = False
    # Returns its outputs as a flat tuple of what the eager model nests (ONNX's outputs).
    flat_outputs: bool = False

    def write_module(self) -> ModuleType:
        """tsnative.backends.<name>, whose write() export() calls."""
        return importlib.import_module(f".backends.{self.name}", __package__)

    def runner_module(self) -> ModuleType | None:
        if self.runner is None:
            return None
        return importlib.import_module(f".backends.{self.runner}", __package__)


FORMATS: tuple[Format, ...] = (
    Format("torchscript", "TorchScript", ".pt", "torch.jit.script / trace"),
    Format(
        "aoti",
        "AOTInductor",
        ".pt2",
        "torch.export and AOTInductor (aot_compile, package_aoti)",
        torch_export=True,
    ),
    Format(
        "onnx",
        "ONNX",
        ".onnx",
        "torch.onnx.export",
        runner="onnx_runner",
        extra="onnx",
        torch_export=True,
        flat_outputs=True,
    ),
)
NAMES: tuple[str, ...] = tuple(found.name for found in FORMATS)
_BY_NAME = {found.name: found for found in FORMATS}
_BY_TITLE = {found.title: found for found in FORMATS}


def named(name: str) -> Format:
    """The format of that name; ValueError naming the known ones otherwise."""
    found = _BY_NAME.get(name)
    if found is None:
        raise ValueError(f"formats are {', '.join(NAMES)}, not {name!r}")
    return found


def by_suffix(suffix: str) -> Format | None:
    """The format export() writes for a file name ending in `suffix` (".PT2" as ".pt2")."""
    return next((found for found in FORMATS if found.suffix == suffix.lower()), None)


def suffixes() -> str:
    """The suffixes and their formats, for messages: ".pt (torchscript), .pt2 (aoti), ..."."""
    return ", ".join(f"{found.suffix} ({found.name})" for found in FORMATS)


def sniffed(first_bytes: bytes) -> Format | None:
    """The format a file's first bytes say, as the core tells (every zip is TorchScript here:
    the core tells an AOTInductor package from its records when it loads it); None if unknown."""
    return _BY_TITLE.get(_C.sniff_model_format(first_bytes))
