"""What torch.export, Inductor and the ONNX exporter print about their internals, kept from the
user, who sees tsnative's own message (an ExportError with the cause) instead."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Python's stdout and stderr, warnings, and torch's log lines below ERROR (the FX graph of a
    failed export, "torchvision is not installed. Skipping ...") are dropped meanwhile. torch's
    loggers write through handlers of their own, which a redirect of sys.stderr misses."""
    handlers = {
        handler
        for name in list(logging.root.manager.loggerDict)
        if name == "torch" or name.startswith("torch.")
        for handler in logging.getLogger(name).handlers
    }
    below_error = _BelowError()
    for handler in handlers:
        handler.addFilter(below_error)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for handler in handlers:
            handler.removeFilter(below_error)
