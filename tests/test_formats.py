"""What every format does alike, each test run for every format of tsnative.FORMATS on the tiny
classifier (conftest.classifier_as): the file describes itself, loads from a path, from bytes
where the format allows, runs from several threads at once against eager, and a damaged file
is one clear ModelLoadError."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import tsnative
from conftest import Classifier
from test_onnx import ONNX_MISSING


@pytest.fixture(params=tsnative.FORMATS)
def classifier_file(request: pytest.FixtureRequest, classifier_as: Callable[[str], Path]) -> Path:
    if request.param == "onnx" and ONNX_MISSING:
        pytest.skip(f"{ONNX_MISSING}: the onnx extra is not installed")
    return classifier_as(request.param)


def test_carries_its_labels_and_preprocessing(
    classifier_file: Path, tiny_classifier: Classifier
) -> None:
    module = tsnative.load(classifier_file)
    assert module.labels == tiny_classifier.labels
    assert module.preprocess == {**tiny_classifier.preprocess}


def test_threads_agree_with_eager(classifier_file: Path, tiny_classifier: Classifier) -> None:
    """4 threads at once on one Module, each result against eager (the GIL is released while
    the core runs, and ONNX Runtime's session is called concurrently)."""
    module = tsnative.load(classifier_file)
    inputs = [
        torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(i)) for i in range(4)
    ]
    results: dict[int, torch.Tensor] = {}
    barrier = threading.Barrier(len(inputs))

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            results[i] = module(inputs[i])

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with torch.no_grad():
        for i, x in enumerate(inputs):
            expected = tiny_classifier.eager(x)
            torch.testing.assert_close(results[i], expected, rtol=1e-5, atol=1e-5)


def test_loads_from_bytes_where_the_format_allows(classifier_file: Path) -> None:
    data = classifier_file.read_bytes()
    x = torch.rand(2, 3, 40, 40)
    expected = tsnative.load(classifier_file)(x)
    if classifier_file.suffix == ".pt2":  # its compiled code is a shared library: a file
        with pytest.raises(tsnative.ModelLoadError, match="loads from a file"):
            tsnative.load(data)
        return
    with open(classifier_file, "rb") as file:
        for module in (tsnative.load(data), tsnative.load(file)):
            assert module.path == ""
            assert torch.equal(module(x), expected)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_file_is_one_clear_load_error(
    classifier_file: Path, tmp_path: Path, damage: str
) -> None:
    data = classifier_file.read_bytes()
    bad = tmp_path / f"{damage}{classifier_file.suffix}"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 3])
    else:  # the header intact, the rest scrambled
        bad.write_bytes(data[:16] + bytes(b ^ 0x5A for b in data[16:]))
    with pytest.raises(tsnative.ModelLoadError) as caught:
        tsnative.load(bad)
    message = str(caught.value)
    assert bad.name in message and "\n" not in message
    assert "ONNXRuntimeError" not in message  # ONNX Runtime's status line reworded
