"""ts-infer's classification mode, `ts-infer MODEL IMAGE... | DIR`, as a user runs it.

The reference is tsnative.classify with the same settings (itself checked against Pillow and
eager PyTorch in tests/test_classify.py): the same labels, the same probabilities to two
decimals in text, and exactly in JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import tsnative
from conftest import Classifier
from helpers import PILLOW_PROBABILITY_ATOL, run_cli, run_cli_on_terminal

SUMMARY = re.compile(r"^classified (\d+) of (\d+) images in \d+\.\d\d s( \((\d+) skipped\))?$")
PROGRESS_CODES = ("\r", "\x1b")


def describe(prediction: tsnative.Prediction) -> str:
    """The line ts-infer prints for a prediction: the label (or index) and a percentage."""
    name = prediction.label if prediction.label is not None else str(prediction.index)
    return f"{name}: {100 * prediction.probability:.2f}%"


def expected_text(results: Sequence[tsnative.Classification]) -> list[str]:
    """stdout lines for classified files: bare for one file, under a path header for several."""
    if len(results) == 1:
        return [describe(p) for p in results[0].predictions]
    lines = []
    for result in results:
        if result.error is None:
            lines += [result.path] + [f"  {describe(p)}" for p in result.predictions]
    return lines


def expected_json(results: Sequence[tsnative.Classification]) -> list[dict[str, Any]]:
    return [
        {"path": r.path, "error": r.error}
        if r.error is not None
        else {
            "path": r.path,
            "predictions": [
                {"index": p.index, "label": p.label, "probability": p.probability}
                for p in r.predictions
            ],
        }
        for r in results
    ]


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def assert_summary(stderr: str, classified: int, total: int) -> None:
    match = SUMMARY.match(stderr.splitlines()[-1])
    assert match, stderr
    assert (int(match[1]), int(match[2])) == (classified, total)
    skipped = total - classified
    assert match[4] == (str(skipped) if skipped else None), stderr


@pytest.fixture(scope="module")
def unlabelled(tiny_classifier: Classifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny classifier exported with its preprocessing but no labels."""
    path = tmp_path_factory.mktemp("unlabelled") / "model.pt"
    tsnative.export(
        tiny_classifier.eager,
        torch.rand(1, 3, 40, 40),
        path,
        preprocess=tiny_classifier.preprocess,
    )
    return path


# --- Text output ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [None, 1, 3])
def test_one_image_prints_k_labelled_lines(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path, k: int | None
) -> None:
    image = photo_dir / "chelsea.png"
    flags = [] if k is None else ["-k", str(k)]
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, image, *flags)
    assert (code, stderr) == (0, "")
    lines = stdout.splitlines()
    assert len(lines) == (5 if k is None else k)
    assert all(re.fullmatch(r".+: \d{1,3}\.\d\d%", line) for line in lines), lines
    expected = tsnative.classify(tiny_classifier.path, image, k=k or 5)
    assert lines == expected_text(expected)
    assert lines[0].startswith("tabby, tabby cat: ")


def test_several_images_print_a_header_each_in_the_given_order(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    images = [photo_dir / "rocket.jpg", photo_dir / "astronaut.jpg", photo_dir / "coffee.png"]
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, *images, "-k", "2")
    assert code == 0
    expected = tsnative.classify(tiny_classifier.path, images, k=2)
    assert stdout.splitlines() == expected_text(expected)
    assert stdout.splitlines()[::3] == [str(image) for image in images]
    assert len(stderr.splitlines()) == 1
    assert_summary(stderr, 3, 3)


def test_a_folder_is_classified_in_sorted_order(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, photo_dir)
    assert code == 0
    expected = tsnative.classify(tiny_classifier.path, photo_dir)
    assert stdout.splitlines() == expected_text(expected)
    headers = [line for line in stdout.splitlines() if not line.startswith("  ")]
    assert headers == [str(path) for path in sorted(photo_dir.iterdir())]
    assert_summary(stderr, 5, 5)


def test_model_without_labels_prints_indices(
    ts_infer: Path, unlabelled: Path, photo_dir: Path
) -> None:
    image = photo_dir / "coffee.png"
    code, stdout, _ = run_cli(ts_infer, unlabelled, image)
    assert code == 0
    expected = tsnative.classify(unlabelled, image)
    assert all(p.label is None for p in expected[0].predictions)
    assert stdout.splitlines() == expected_text(expected)
    assert all(re.fullmatch(r"\d: \d{1,3}\.\d\d%", line) for line in stdout.splitlines())
    assert stdout.splitlines()[0].startswith("3: ")


def test_batch_size_does_not_change_the_output(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    expected = expected_text(tsnative.classify(tiny_classifier.path, photo_dir))
    for size in ("1", "2", "16"):
        code, stdout, _ = run_cli(ts_infer, tiny_classifier.path, photo_dir, "--batch-size", size)
        assert (code, stdout.splitlines()) == (0, expected), f"--batch-size {size}"


# --- JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 5])
def test_json_lines_match_python(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path, k: int
) -> None:
    code, stdout, stderr = run_cli(
        ts_infer, tiny_classifier.path, photo_dir, "--json", "-k", str(k)
    )
    assert code == 0
    assert_summary(stderr, 5, 5)
    assert json_lines(stdout) == expected_json(
        tsnative.classify(tiny_classifier.path, photo_dir, k=k)
    )


def test_json_without_labels_has_null_labels(
    ts_infer: Path, unlabelled: Path, photo_dir: Path
) -> None:
    image = photo_dir / "astronaut.jpg"
    code, stdout, stderr = run_cli(ts_infer, unlabelled, image, "--json")
    assert (code, stderr) == (0, "")
    [line] = json_lines(stdout)
    assert [p["label"] for p in line["predictions"]] == [None] * 5
    assert [line] == expected_json(tsnative.classify(unlabelled, image))


# --- Flags override the metadata -------------------------------------------------------------


@pytest.mark.parametrize(("labels", "count"), [("imagenet", 1000), ("three.txt", 3)])
def test_labels_not_one_per_class_exit_1_with_one_line(
    ts_infer: Path,
    tiny_classifier: Classifier,
    photo_dir: Path,
    tmp_path: Path,
    labels: str,
    count: int,
) -> None:
    (tmp_path / "three.txt").write_text("one\ntwo\nthree\n")
    if labels != "imagenet":
        labels = str(tmp_path / labels)
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, photo_dir, "--labels", labels)
    assert code == 1
    assert stdout == ""
    assert stderr.count("\n") == 1
    assert f"the labels do not match the model: {count} labels for 5 classes" in stderr


@pytest.mark.parametrize(
    ("make_labels", "expected_first"),
    [
        pytest.param(lambda tmp: str(tmp / "five.txt"), "one", id="file"),
    ],
)
def test_labels_flag_overrides_the_metadata(
    ts_infer: Path,
    tiny_classifier: Classifier,
    photo_dir: Path,
    tmp_path: Path,
    make_labels: Any,
    expected_first: str,
) -> None:
    (tmp_path / "five.txt").write_text("one\ntwo\nthree\nfour\nfive\n")
    labels = make_labels(tmp_path)
    code, stdout, _ = run_cli(ts_infer, tiny_classifier.path, photo_dir, "--labels", labels)
    assert code == 0
    expected = tsnative.classify(tiny_classifier.path, photo_dir, labels=labels)
    assert stdout.splitlines() == expected_text(expected)
    assert stdout.splitlines()[1] == f"  {expected_first}: {100 * expected[0].top.probability:.2f}%"


@pytest.mark.parametrize(
    ("flags", "changes"),
    [
        pytest.param(["--resize", "64", "--crop", "56"], {"resize": 64, "crop": 56}, id="sizes"),
        pytest.param(["--resize", "0", "--crop", "60"], {"resize": 0, "crop": 60}, id="no_resize"),
        pytest.param(["--mean", "0.5", "--std", "0.25"], {"mean": [0.5], "std": [0.25]}, id="one"),
        pytest.param(
            ["--mean", "0.4,0.5,0.6", "--std", "0.3,0.2,0.1"],
            {"mean": [0.4, 0.5, 0.6], "std": [0.3, 0.2, 0.1]},
            id="per_channel",
        ),
        pytest.param(
            ["--color", "grayscale", "--mean", "0.4", "--std", "0.3"],
            {"color": "grayscale", "mean": [0.4], "std": [0.3]},
            id="grayscale",
        ),
    ],
)
def test_preprocessing_flags_override_the_metadata(
    ts_infer: Path,
    tiny_classifier: Classifier,
    photo_dir: Path,
    flags: list[str],
    changes: dict[str, Any],
) -> None:
    """Each flag replaces its field of the model's preprocessing; the rest stays."""
    code, stdout, _ = run_cli(ts_infer, tiny_classifier.path, photo_dir, "--json", *flags)
    assert code == 0
    preprocess = {**tiny_classifier.preprocess, **changes}
    expected = tsnative.classify(tiny_classifier.path, photo_dir, preprocess=preprocess)
    assert json_lines(stdout) == expected_json(expected)
    # The flags made a difference.
    assert expected_json(expected) != expected_json(
        tsnative.classify(tiny_classifier.path, photo_dir)
    )


def test_python_partial_preprocess_overrides_like_the_flags(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    code, stdout, _ = run_cli(ts_infer, tiny_classifier.path, photo_dir, "--json", "--crop", "32")
    assert code == 0
    partial = tsnative.classify(tiny_classifier.path, photo_dir, preprocess={"crop": 32})
    assert json_lines(stdout) == expected_json(partial)


def test_no_crop_over_images_of_different_sizes(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    # Each size through the model on its own: what classify (checked against eager on Pillow's
    # pixels in test_classify.py) gives, line for line.
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, photo_dir, "--crop", "0")
    assert (code, len(stderr.splitlines())) == (0, 1), stderr
    whole = tsnative.classify(tiny_classifier.path, photo_dir, preprocess={"crop": 0})
    assert stdout.splitlines() == expected_text(whole)


# --- Unreadable files, errors and exit codes -------------------------------------------------


def test_unreadable_file_is_skipped_and_reported(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(photo_dir, folder)
    bad = folder / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 a JPEG that stops here")
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, folder)
    assert code == 1
    expected = tsnative.classify(tiny_classifier.path, folder)
    assert [r.path for r in expected if r.error] == [str(bad)]
    assert stdout.splitlines() == expected_text(expected)  # the five others
    lines = stderr.splitlines()
    assert len(lines) == 2, stderr
    assert lines[0].startswith(f"ts-infer: skipped: cannot decode JPEG '{bad}'"), lines[0]
    assert_summary(stderr, 5, 6)

    code, stdout, _ = run_cli(ts_infer, tiny_classifier.path, folder, "--json")
    assert code == 1
    assert json_lines(stdout) == expected_json(expected)
    assert json_lines(stdout)[1] == {"path": str(bad), "error": expected[1].error}


def test_one_unreadable_image(ts_infer: Path, tiny_classifier: Classifier, tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, missing)
    assert (code, stdout) == (1, "")
    assert stderr == f"ts-infer: skipped: cannot read image '{missing}': no such file\n"


def test_a_fifo_among_images_is_skipped_without_blocking(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path, tmp_path: Path
) -> None:
    """Opening a FIFO waits for a writer: the run would hang (run_cli's timeout fails it)."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    good = photo_dir / "chelsea.png"
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, fifo, good, "--json")
    assert code == 1
    assert stderr.splitlines()[0] == (
        f"ts-infer: skipped: cannot read image '{fifo}': it is not a regular file (a FIFO, "
        "socket or device)"
    )
    lines = json_lines(stdout)
    assert [line["path"] for line in lines] == [str(fifo), str(good)]
    assert "predictions" in lines[1]


def test_empty_folder_is_an_error(
    ts_infer: Path, tiny_classifier: Classifier, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, tmp_path)
    assert (code, stdout) == (1, "")
    assert stderr == f"ts-infer: error: no JPEG or PNG images found in '{tmp_path}'\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(["--input", "x.pt"], "ts-infer: images excludes --input", id="input"),
        pytest.param(["--batch-size", "0"], "--batch-size: must be at least 1, got 0", id="batch"),
        pytest.param(["-k", "0"], "--topk: must be at least 1, got 0", id="k"),
        pytest.param(["--color", "sepia"], "--color: sepia not in {rgb,grayscale}", id="color"),
        pytest.param(["--crop", "300"], "crop 300 is larger than resize 48", id="crop"),
        pytest.param(
            ["--mean", "0.5", "--std", "0"], "std values must be finite and non-zero", id="std"
        ),
        pytest.param(
            ["--color", "grayscale"],
            "mean and std have 3 values but grayscale images have 1 channel",
            id="grayscale_with_rgb_mean",
        ),
    ],
)
def test_usage_errors_exit_2(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path, flags: list[str], message: str
) -> None:
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, photo_dir, *flags)
    assert (code, stdout) == (2, "")
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("ts-infer: ")
    assert message in stderr


def test_missing_labels_file_exits_1(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "labels.txt"
    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, photo_dir, "--labels", missing)
    assert (code, stdout) == (1, "")
    assert stderr == f"ts-infer: error: cannot read labels file '{missing}': no such file\n"


# --- Progress ------------------------------------------------------------------------------


def test_no_progress_codes_when_stderr_is_not_a_terminal(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    code, _, stderr = run_cli(ts_infer, tiny_classifier.path, photo_dir, "--batch-size", "2")
    assert code == 0
    assert not any(c in stderr for c in PROGRESS_CODES), repr(stderr)
    assert len(stderr.splitlines()) == 1
    assert_summary(stderr, 5, 5)


def test_progress_on_a_terminal(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    """The counterpart of the test above: on a terminal the progress is there, then erased."""
    code, stdout, terminal = run_cli_on_terminal(
        ts_infer, tiny_classifier.path, photo_dir, "--batch-size", "2"
    )
    assert code == 0
    assert stdout.splitlines() == expected_text(tsnative.classify(tiny_classifier.path, photo_dir))
    progress, _, summary = terminal.rpartition("\r\x1b[K")
    # Each batch erases the line before its results go to stdout (the same terminal for a user).
    erase = "\r\x1b[K"
    assert progress == f"{erase}classifying 2/5{erase}classifying 4/5{erase}classifying 5/5"
    assert_summary(summary.rstrip("\r\n"), 5, 5)


def test_a_folder_matches_eager_on_pillows_preprocessing(
    ts_infer: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    # Against an independent reference, not only tsnative.classify: a bug in the shared core
    # must not pass here because it passes there too.
    from test_classify import eager_reference

    code, stdout, stderr = run_cli(ts_infer, tiny_classifier.path, photo_dir, "--json", "-k", "3")
    assert code == 0, stderr
    paths = sorted(photo_dir.iterdir())
    probabilities, indices = eager_reference(tiny_classifier, paths, 3, tiny_classifier.preprocess)
    lines = json_lines(stdout)
    assert [line["path"] for line in lines] == [str(path) for path in paths]
    for line, row_p, row_i in zip(lines, probabilities, indices, strict=True):
        assert [p["index"] for p in line["predictions"]] == row_i.tolist()
        assert [p["label"] for p in line["predictions"]] == [
            tiny_classifier.labels[i] for i in row_i.tolist()
        ]
        got = torch.tensor([p["probability"] for p in line["predictions"]], dtype=torch.float64)
        assert float((got - row_p.double()).abs().max()) <= PILLOW_PROBABILITY_ATOL
