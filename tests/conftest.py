"""Shared fixtures: the ts-infer binary and the session-wide store of saved models."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest

# examples/resnet18.py is imported by models.py as `from resnet18 import resnet18`.
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from models import SavedModels  # noqa: E402  (needs EXAMPLES on sys.path)


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> SavedModels:
    return SavedModels(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def ts_infer() -> Path:
    """The installed ts-infer: in the scripts directory of the Python running the tests."""
    binary = Path(sysconfig.get_path("scripts")) / "ts-infer"
    if not binary.is_file():
        pytest.fail(f"ts-infer is not installed at {binary}: run `make setup`")
    return binary
