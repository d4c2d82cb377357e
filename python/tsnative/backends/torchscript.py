"""Writing TorchScript archives (.pt): torch.jit.script or torch.jit.trace, and what says whether
a trace can be trusted. The archive runs in the C++ core (csrc/core/backends/torchscript)."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import _C
from . import ExportOptions, WriteFailure, Written


@dataclass
class Script:
    """A TorchScript module and how it was made: what the tracer warned of in the model's own
    code, and, where method "auto" fell back to tracing, why scripting failed."""

    module: torch.jit.ScriptModule
    method: str  # "script" or "trace"
    tracer_warnings: list[str] = field(default_factory=list)
    script_failure: str = ""


def write(
    model: torch.nn.Module,
    example: tuple[Any, ...],
    path: str,
    metadata: _C.Metadata,
    options: ExportOptions,
) -> Written:
    """Scripts or traces `model` (options.method) and saves it at `path`, the metadata as the
    archive's extra file."""
    script = to_script(model, example, options.method)
    metadata.export_method = script.method
    with torchscript_quiet():
        torch.jit.save(script.module, path, _extra_files={_C.METADATA_FILE: metadata.to_json()})
    return Written(
        f"{script.method}d", trace_hint(script), untrusted_trace(script), after=note_successor
    )


def to_script(model: torch.nn.Module, example: tuple[Any, ...], method: str) -> Script:
    """Scripts the model ("script"), traces it on `example` ("trace"), or scripts it where it
    can and traces it otherwise ("auto"); WriteFailure with the cause if it cannot."""
    script_failure = ""
    if method in ("auto", "script"):
        try:
            with torchscript_quiet():
                return Script(torch.jit.script(model), "script")
        except Exception as error:
            if method == "script":
                raise WriteFailure(f"torch.jit.script failed: {error}") from None
            script_failure = _first_line(error)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        try:
            with torchscript_quiet():
                # strict=False: models returning a dict or list trace too.
                traced = torch.jit.trace(model, example, check_trace=False, strict=False)
        except Exception as error:
            raise WriteFailure(f"torch.jit.trace failed: {error}") from None
    torch_code = os.path.dirname(torch.__file__) + os.sep
    tracer_warnings = [
        f"{w.filename}:{w.lineno}: {_first_line(w.message).split('. ')[0]}"
        for w in caught
        # torch's own modules (nn.LSTM's input checks, ...) compare traced sizes only to raise:
        # what they warn about is no path the trace freezes.
        if issubclass(w.category, torch.jit.TracerWarning) and not w.filename.startswith(torch_code)
    ]
    tracer_warnings = list(dict.fromkeys(tracer_warnings))  # each said once
    return Script(traced, "trace", tracer_warnings, script_failure)


def _first_line(error: BaseException | Warning | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0].rstrip(".") if text else type(error).__name__


_DEPRECATION = re.compile(r"(TorchScript|torch\.jit).*deprecated", re.IGNORECASE | re.DOTALL)
# How torch warned, in this process, that TorchScript is deprecated (None: it has not).
_torchscript_deprecated: type[Warning] | None = None
_successor_noted = False


@contextlib.contextmanager
def torchscript_quiet() -> Iterator[None]:
    """Keeps torch's own TorchScript deprecation warnings (torch 2.15 warns on every torch.jit
    call) from the user; export says it once, in its own words (note_successor). Every other
    warning goes on as it came."""
    global _torchscript_deprecated
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for warning in caught:
            if _DEPRECATION.search(str(warning.message)):
                _torchscript_deprecated = warning.category
            else:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )


def note_successor() -> None:
    """Once per process, where torch deprecates TorchScript: what to export instead, as loudly
    as torch said it (a DeprecationWarning on torch 2.13, hidden by default)."""
    global _successor_noted
    if _torchscript_deprecated is not None and not _successor_noted:
        _successor_noted = True
        warnings.warn(
            f"torch {torch.__version__} deprecates TorchScript (.pt); its successor is the "
            "AOTInductor package: tsnative.export(model, example, 'model.pt2') writes one, and "
            "tsnative.load, ts-infer and the C++ API run it as they run a .pt",
            _torchscript_deprecated,
            stacklevel=3,
        )


def untrusted_trace(script: Script) -> str:
    """Why a trace that matched on every input given may still differ from the model on
    others ("" when nothing says so): the tracer's own warnings."""
    if script.method != "trace" or not script.tracer_warnings:
        return ""
    why = (
        f"method='auto' traced it because torch.jit.script failed ({script.script_failure})"
        if script.script_failure
        else "it was traced (method='trace')"
    )
    return (
        f"the traced file may not equal the model on inputs other than those checked: {why}, "
        f"and the tracer warned: {' | '.join(script.tracer_warnings)}. Tracing records the one "
        "path the example input took, so data-dependent control flow (e.g. `if x.sum() > 0:`) "
        "is frozen"
    )


def trace_hint(script: Script) -> str:
    if script.method != "trace":
        return ""
    hint = (
        " Tracing records the one path the example input took, so data-dependent "
        "control flow (e.g. `if x.sum() > 0:`) is frozen; export with "
        "method='script' (or make the model scriptable)."
    )
    if script.tracer_warnings:
        hint += " The tracer warned: " + " | ".join(script.tracer_warnings)
    return hint
