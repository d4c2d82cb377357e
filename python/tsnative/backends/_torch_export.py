"""What the writers through torch.export share (``aoti.py``, ``int8.py``): the export itself,
the stages the user sees while it and the compile run, and the cause of a failure in a line."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch

from . import WriteFailure
from ._quiet import quiet


def exported(
    model: torch.nn.Module, example: tuple[Any, ...], dynamic_batch: bool, *, strict: bool = False
) -> torch.export.ExportedProgram:
    """torch.export of `model` on `example`, the first dimension of each tensor dynamic with
    `dynamic_batch`; WriteFailure with the cause if it cannot capture the model."""
    dynamic_shapes = None
    if dynamic_batch:
        dynamic_shapes = tuple(
            {0: torch.export.Dim.DYNAMIC} if value.dim() >= 1 else None for value in example
        )
    try:
        with size_oblivious(), quiet(), torch.no_grad():
            return torch.export.export(model, example, dynamic_shapes=dynamic_shapes, strict=strict)
    except Exception as error:
        raise WriteFailure(f"torch.export failed: {cause(error)}") from None


def at_batch(example: tuple[Any, ...], batch: int) -> tuple[Any, ...]:
    """The example's rows, repeated or cut to `batch` rows (its tensors share a first
    dimension: export() checks it)."""
    return tuple(value[torch.arange(batch) % value.shape[0]] for value in example)


def size_oblivious() -> contextlib.AbstractContextManager[None]:
    """An example batch of 1 must not specialise the batch to 1: torch.export and Inductor
    otherwise treat sizes 0 and 1 as constants (both steps need it)."""
    import torch.fx.experimental._config as fx_config

    return fx_config.patch(backed_size_oblivious=True)


@contextlib.contextmanager
def stage(progress: bool | None, description: str) -> Iterator[None]:
    """A line on stderr that counts the seconds while a slow step runs (progress None: when
    stderr is a terminal)."""
    if not shows_progress(progress):
        yield
        return
    from tqdm import tqdm

    bar = tqdm(desc=description, bar_format="{desc}: {elapsed}", file=sys.stderr, leave=True)
    done = threading.Event()

    def tick() -> None:
        while not done.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    started = time.monotonic()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        bar.bar_format = "{desc}"
        bar.set_description_str(f"{description}: done in {time.monotonic() - started:.0f} s")
        bar.close()


def shows_progress(progress: bool | None) -> bool:
    """progress True or False as said; None: when stderr is a terminal."""
    return progress is True or (progress is None and sys.stderr.isatty())


def cause(error: BaseException) -> str:
    """The failure in a line, and the model's own line where torch.export stopped (its messages
    go on with suggestions and links)."""
    text = str(error).strip()
    summary = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}".strip()
    lines = text.splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("File ") and "/torch/" not in stripped and number + 1 < len(lines):
            summary += f" (at {stripped}: {lines[number + 1].strip()})"
            break
    return summary
