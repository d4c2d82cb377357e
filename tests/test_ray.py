"""tsnative.ray on a local Ray instance (2 CPUs, no network): a folder of generated images,
one of them unreadable, classified by actors; every row must equal ts-infer --json's line for
the same file (the same core), errors included, with 1 and 2 actors, and as Parquet."""

from __future__ import annotations

import faulthandler
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pyarrow
import pyarrow.parquet
import pytest
import ray
import tsnative
import tsnative.ray
from conftest import Classifier
from helpers import run_cli, run_python

# A Ray test that hangs (an actor that never returns, a cluster that never starts) must fail the
# run, not stall CI: past this, the stacks of every thread are printed and pytest exits.
RAY_TEST_TIMEOUT_S = 600


@pytest.fixture(autouse=True)
def fails_if_it_hangs():
    faulthandler.dump_traceback_later(RAY_TEST_TIMEOUT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def local_ray():
    faulthandler.dump_traceback_later(RAY_TEST_TIMEOUT_S, exit=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    faulthandler.cancel_dump_traceback_later()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ray_photos")
    for i in range(6):  # 30 images in all, over several batches
        for photo in sorted(photo_dir.iterdir()):
            shutil.copy(photo, directory / f"{i}_{photo.name}")
    (directory / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return directory


def _expected(ts_infer: Path, model: Path, folder: Path) -> list[dict[str, Any]]:
    code, stdout, _ = run_cli(ts_infer, model, folder, "--json", "-k", "3")
    assert code == 1  # the broken file
    rows = []
    for line in stdout.splitlines():
        record = json.loads(line)
        predictions = record.get("predictions", [])
        rows.append(
            {
                "path": record["path"],
                "indices": [p["index"] for p in predictions],
                "probabilities": [p["probability"] for p in predictions],
                "labels": [p["label"] for p in predictions],
                "error": record.get("error"),
            }
        )
    return sorted(rows, key=lambda row: row["path"])


def _rows(table: pyarrow.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda row: row["path"])


@pytest.mark.parametrize("concurrency", [1, 2])
def test_rows_equal_ts_infer(
    local_ray: None,
    ts_infer: Path,
    tiny_classifier: Classifier,
    folder: Path,
    concurrency: int,
) -> None:
    dataset = tsnative.ray.classify(
        tiny_classifier.path, folder, k=3, batch_size=8, concurrency=concurrency
    )
    blocks = ray.get(dataset.materialize().to_arrow_refs())
    rows = _rows(pyarrow.concat_tables(blocks))
    assert len(rows) == 31
    assert rows == _expected(ts_infer, tiny_classifier.path, folder)
    broken = next(row for row in rows if row["path"].endswith("broken.png"))
    assert "broken.png" in broken["error"] and broken["indices"] == []


def test_parquet_output(
    local_ray: None, ts_infer: Path, tiny_classifier: Classifier, folder: Path, tmp_path: Path
) -> None:
    output = tmp_path / "preds"
    assert tsnative.ray.classify(tiny_classifier.path, folder, output=output, k=3) is None
    table = pyarrow.parquet.read_table(output)
    assert table.schema.field("error").type == pyarrow.string()
    assert _rows(table) == _expected(ts_infer, tiny_classifier.path, folder)
    with pytest.raises(FileExistsError, match="is not empty: pass overwrite=True"):
        tsnative.ray.classify(tiny_classifier.path, folder, output=output)
    tsnative.ray.classify(tiny_classifier.path, folder, output=output, overwrite=True, k=3)
    rewritten = pyarrow.parquet.read_table(output)
    assert _rows(rewritten) == _rows(table)  # replaced, not appended


def test_no_images_is_an_input_error(local_ray: None, tiny_classifier: Classifier, tmp_path: Path):
    with pytest.raises(tsnative.InputError, match="no JPEG or PNG images found"):
        tsnative.ray.classify(tiny_classifier.path, tmp_path)


def test_threads_per_actor_must_be_positive(tiny_classifier: Classifier, folder: Path) -> None:
    with pytest.raises(ValueError, match="threads_per_actor must be at least 1"):
        tsnative.ray.classify(tiny_classifier.path, folder, threads_per_actor=0)


def test_the_predictor_sets_its_own_threads(tiny_classifier: Classifier) -> None:
    before = tsnative.get_num_threads()
    try:
        tsnative.ray.Predictor(tiny_classifier.path, threads=1)
        assert tsnative.get_num_threads() == 1
    finally:
        tsnative.set_num_threads(before)


def test_without_ray_the_error_names_the_extra() -> None:
    code = (
        "import sys\nsys.modules['ray'] = None  # as if Ray were not installed\n"
        "try:\n    import tsnative.ray\nexcept ImportError as e:\n    print(e)\n"
    )
    result = run_python(code)
    assert result.stdout.strip() == (
        "tsnative.ray needs Ray Data, which is not installed: pip install 'ray[data]>=2.60'"
    )


def test_no_deprecated_ray_arguments(local_ray: None, tiny_classifier: Classifier, folder: Path):
    # Ray 2.51 deprecated map_batches(concurrency=...) with a warning in the user's log.
    said: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = said.append  # type: ignore[method-assign]
    logger = logging.getLogger("ray.data")
    logger.addHandler(handler)
    try:
        tsnative.ray.classify(tiny_classifier.path, folder, concurrency=1)
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in said if "deprecated" in r.getMessage()] == []


def test_rows_match_eager_on_pillows_preprocessing(
    local_ray: None, tiny_classifier: Classifier, folder: Path
) -> None:
    # An independent reference for tsnative.ray, beside its agreement with ts-infer.
    from helpers import PILLOW_PROBABILITY_ATOL
    from test_classify import eager_reference

    dataset = tsnative.ray.classify(tiny_classifier.path, folder, k=3, concurrency=1)
    table = pyarrow.concat_tables(ray.get(dataset.materialize().to_arrow_refs()))
    rows = [row for row in _rows(table) if not row["error"]]
    paths = [Path(row["path"]) for row in rows]
    probabilities, indices = eager_reference(tiny_classifier, paths, 3, tiny_classifier.preprocess)
    for row, row_p, row_i in zip(rows, probabilities, indices, strict=True):
        assert row["indices"] == row_i.tolist(), row["path"]
        assert row["labels"] == [tiny_classifier.labels[i] for i in row_i.tolist()]
        pairs = zip(row["probabilities"], row_p.tolist(), strict=True)
        difference = max(abs(a - b) for a, b in pairs)
        assert difference <= PILLOW_PROBABILITY_ATOL, row["path"]
    assert len(rows) == 30


def test_overrides_lists_packages_and_threads(
    local_ray: None, tiny_classifier: Classifier, classifier_package: Path, folder: Path
) -> None:
    """Paths given as a list, labels and preprocessing overridden, a .pt2 model, 2 threads per
    actor: each row is what tsnative.classify gives with the same settings."""
    paths = sorted(str(path) for path in folder.iterdir() if path.name.startswith("1_"))
    labels = [f"class {i}" for i in range(5)]
    preprocess = {"resize": 60, "crop": 40, "mean": [0.5, 0.5, 0.5]}  # the package's 40x40
    dataset = tsnative.ray.classify(
        classifier_package,
        paths,
        k=2,
        labels=labels,
        preprocess=preprocess,
        concurrency=1,
        threads_per_actor=2,
    )
    table = pyarrow.concat_tables(ray.get(dataset.materialize().to_arrow_refs()))
    rows = _rows(table)
    expected = tsnative.classify(
        classifier_package, paths, k=2, labels=labels, preprocess=preprocess
    )
    assert [row["path"] for row in rows] == [result.path for result in expected]
    for row, result in zip(rows, expected, strict=True):
        assert row["labels"] == [p.label for p in result.predictions]
        assert row["indices"] == [p.index for p in result.predictions]
        assert row["probabilities"] == pytest.approx([p.probability for p in result.predictions])
