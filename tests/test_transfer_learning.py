"""examples/transfer_learning.py end to end: the backbone's features computed natively equal
the eager backbone's, and the transferred classifier, run natively on held-out PNGs, clears a
stated floor (95.2% measured with 20 epochs; 90% asked, with 10)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
import transfer_learning

ACCURACY_FLOOR = 0.90


def test_transfer_learning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = transfer_learning.main(epochs=10, per_class=25, out_dir=tmp_path)
    out = capsys.readouterr().out
    assert result.feature_shape == [771, 256]
    assert result.feature_max_diff <= 1e-5 * result.feature_scale + 1e-6
    assert len(result.accuracies) == 10
    assert out.count("accuracy: ") == 11  # each epoch, then the native run
    assert result.native_accuracy >= ACCURACY_FLOOR, out
    # The exported model classifies the held-out PNGs as the head scored their features.
    assert abs(result.native_accuracy - result.accuracies[-1]) <= 0.01, out
