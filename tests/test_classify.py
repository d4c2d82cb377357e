"""tsnative.load_image and tsnative.classify against independent references: a Pillow
reference of the preprocessing (helpers.pillow_preprocess) and the eager model on the
Pillow-preprocessed batch. tests/test_image_parity.py covers decoding in depth; this checks
the public functions on a few photos.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import tsnative
from conftest import Classifier
from helpers import (
    IMAGENET_STD,
    PILLOW_PROBABILITY_ATOL,
    PIXEL_ATOL,
    TOLERANCES,
    eager_topk,
    pillow_preprocess,
)
from PIL import Image
from skimage import data

# --- load_image vs Pillow -----------------------------------------------------------------


@pytest.fixture(scope="module")
def full_photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """scikit-image's photos at full size, as PNG (lossless: decoding is not what varies)."""
    directory = tmp_path_factory.mktemp("full_photos")
    paths = {}
    for name in ("astronaut", "chelsea", "coffee"):  # 512x512, 300x451, 400x600
        paths[name] = directory / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(paths[name])
    return paths


def _max_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.dtype == expected.dtype == torch.float32
    assert actual.shape == expected.shape
    return float((actual.double() - expected.double()).abs().max())


@pytest.mark.parametrize("photo", ["astronaut", "chelsea", "coffee"])
@pytest.mark.parametrize(
    ("resize", "crop", "color"),
    [(256, 224, "rgb"), (64, 56, "rgb"), (100, 0, "grayscale"), (0, 150, "rgb")],
)
def test_load_image_matches_pillow_before_normalisation(
    full_photos: dict[str, Path], photo: str, resize: int, crop: int, color: str
) -> None:
    path = full_photos[photo]
    actual = tsnative.load_image(path, resize=resize, crop=crop, mean=[0], std=[1], color=color)
    expected = pillow_preprocess(path, resize, crop, mean=[0], std=[1], color=color)
    diff = _max_diff(actual, expected)
    print(f"{photo} resize={resize} crop={crop} {color}: max |diff| = {diff * 255:.3f} / 255")
    assert diff <= PIXEL_ATOL


def test_load_image_defaults_are_imagenets(full_photos: dict[str, Path]) -> None:
    path = full_photos["chelsea"]
    actual = tsnative.load_image(path)
    assert actual.shape == (3, 224, 224)
    assert _max_diff(actual, pillow_preprocess(path)) <= PIXEL_ATOL / min(IMAGENET_STD)


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(tsnative.InputError, match=f"'{text}' is not a JPEG or PNG image"):
        tsnative.load_image(text)
    with pytest.raises(ValueError, match="crop 300 is larger than resize 256"):
        tsnative.load_image(text, crop=300)  # the spec is checked before the file is read


# --- classify vs the eager model ----------------------------------------------------------


def _photo_paths(photo_dir: Path) -> list[Path]:
    return sorted(photo_dir.iterdir())


def eager_reference(
    classifier: Classifier, paths: Sequence[Path], k: int, preprocess: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, indices) of the eager model on the Pillow-preprocessed batch."""
    batch = torch.stack([pillow_preprocess(path, **preprocess) for path in paths])
    with torch.no_grad():
        return eager_topk(classifier.eager(batch), k)


def assert_matches_eager(
    results: list[tsnative.Classification],
    classifier: Classifier,
    paths: Sequence[Path],
    *,
    k: int = 5,
    labels: Sequence[str] | None = None,
    preprocess: dict[str, Any] | None = None,
) -> float:
    """Paths in order, top-k indices identical, probabilities within PILLOW_PROBABILITY_ATOL,
    labels by index. Returns the largest probability difference."""
    labels = classifier.labels if labels is None else labels
    if preprocess is None:
        preprocess = classifier.preprocess
    probabilities, indices = eager_reference(classifier, paths, k, preprocess)
    assert [result.path for result in results] == [str(path) for path in paths]
    worst = 0.0
    for result, row_p, row_i in zip(results, probabilities, indices, strict=True):
        assert result.error is None, result.error
        assert [p.index for p in result.predictions] == row_i.tolist(), result.path
        assert [p.label for p in result.predictions] == [labels[i] for i in row_i.tolist()]
        actual = torch.tensor([p.probability for p in result.predictions])
        worst = max(worst, float((actual - row_p.double()).abs().max()))
    print(f"max |probability - eager on Pillow's preprocessing| = {worst:.3g}")
    assert worst <= PILLOW_PROBABILITY_ATOL
    return worst


def test_folder_matches_eager_on_pillows_preprocessing(
    tiny_classifier: Classifier, photo_dir: Path
) -> None:
    results = tsnative.classify(tiny_classifier.path, photo_dir, k=3)
    assert_matches_eager(results, tiny_classifier, _photo_paths(photo_dir), k=3)


def test_the_reference_is_not_trivial(tiny_classifier: Classifier, photo_dir: Path) -> None:
    """Each photo has its own answer, and no near-ties make index equality luck."""
    probabilities, indices = eager_reference(
        tiny_classifier, _photo_paths(photo_dir), 5, tiny_classifier.preprocess
    )
    assert indices[:, 0].tolist() == [0, 1, 2, 3, 4]
    gaps = probabilities[:, :-1] - probabilities[:, 1:]
    assert float(gaps.min()) > 10 * PILLOW_PROBABILITY_ATOL


def test_labels_come_from_the_metadata(tiny_classifier: Classifier, photo_dir: Path) -> None:
    results = tsnative.classify(tiny_classifier.path, photo_dir, k=1)
    assert [(Path(r.path).name, r.top.label) for r in results if r.top] == [
        ("astronaut.jpg", "astronaut"),
        ("camera.png", "cameraman"),
        ("chelsea.png", "tabby, tabby cat"),
        ("coffee.png", "coffee mug"),
        ("rocket.jpg", "space shuttle"),
    ]


def test_a_list_of_paths_keeps_its_order(tiny_classifier: Classifier, photo_dir: Path) -> None:
    paths = _photo_paths(photo_dir)[::-1]
    results = tsnative.classify(tsnative.load(tiny_classifier.path), paths)
    assert_matches_eager(results, tiny_classifier, paths)


def test_one_image(tiny_classifier: Classifier, photo_dir: Path) -> None:
    path = photo_dir / "chelsea.png"
    results = tsnative.classify(tiny_classifier.path, str(path), k=1)
    assert_matches_eager(results, tiny_classifier, [path], k=1)
    assert results[0].top == results[0].predictions[0]


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(["A", "B", "C", "D", "E"], id="list"),
        pytest.param("file", id="file"),
    ],
)
def test_labels_override(
    tiny_classifier: Classifier, photo_dir: Path, tmp_path: Path, labels: Any
) -> None:
    expected = labels
    if labels == "file":
        (tmp_path / "labels.txt").write_text("one\ntwo\nthree\nfour\nfive\n")
        labels, expected = str(tmp_path / "labels.txt"), ["one", "two", "three", "four", "five"]
    results = tsnative.classify(tiny_classifier.path, photo_dir, labels=labels)
    assert_matches_eager(results, tiny_classifier, _photo_paths(photo_dir), labels=expected)


@pytest.mark.parametrize(
    ("labels", "count"),
    [
        pytest.param("imagenet", 1000, id="imagenet"),
        pytest.param("one\ntwo\nthree\n", 3, id="short_file"),
        pytest.param("one\ntwo\nthree\nfour\nfive\nsix\n", 6, id="long_file"),
    ],
)
def test_labels_not_one_per_class_are_an_input_error(
    tiny_classifier: Classifier, photo_dir: Path, tmp_path: Path, labels: str, count: int
) -> None:
    # Names shifted by a line would label every image wrongly: refused, not guessed.
    if labels != "imagenet":
        (tmp_path / "labels.txt").write_text(labels)
        labels = str(tmp_path / "labels.txt")
    with pytest.raises(tsnative.InputError, match=f"{count} labels for 5 classes"):
        tsnative.classify(tiny_classifier.path, photo_dir, labels=labels)


def test_labels_override_with_a_path_object(
    tiny_classifier: Classifier, photo_dir: Path, tmp_path: Path
) -> None:
    file = tmp_path / "labels.txt"
    file.write_text("one\ntwo\nthree\nfour\nfive\n")
    results = tsnative.classify(tiny_classifier.path, photo_dir, labels=file)
    assert_matches_eager(
        results, tiny_classifier, _photo_paths(photo_dir), labels=file.read_text().split()
    )


@pytest.mark.parametrize(
    "preprocess",
    [
        {"resize": 64, "crop": 56, "mean": [0.5], "std": [0.25], "color": "rgb"},
        {"resize": 40, "crop": 32, "mean": [0.4], "std": [0.3], "color": "grayscale"},
    ],
)
def test_preprocess_override(
    tiny_classifier: Classifier, photo_dir: Path, preprocess: dict[str, Any]
) -> None:
    results = tsnative.classify(tiny_classifier.path, photo_dir, preprocess=preprocess)
    assert_matches_eager(results, tiny_classifier, _photo_paths(photo_dir), preprocess=preprocess)
    # The override changed something: the metadata's preprocessing gives other probabilities.
    default = tsnative.classify(tiny_classifier.path, photo_dir)
    assert [r.predictions for r in results] != [r.predictions for r in default]


def test_model_without_metadata_uses_imagenet_defaults(
    tiny_classifier: Classifier, photo_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(tiny_classifier.eager), str(path))
    results = tsnative.classify(path, photo_dir)
    # preprocess={}: pillow_preprocess's own defaults, which are ImageNet's (256, 224, ...).
    imagenet: dict[str, Any] = {}
    paths = _photo_paths(photo_dir)
    assert_matches_eager(results, tiny_classifier, paths, labels=[None] * 5, preprocess=imagenet)


def test_unreadable_files_are_reported_and_do_not_stop_the_others(
    tiny_classifier: Classifier, photo_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(photo_dir, folder)
    (folder / "b_notes.png").write_text("not an image")
    truncated = (folder / "coffee.png").read_bytes()
    (folder / "d_truncated.png").write_bytes(truncated[: len(truncated) // 2])
    results = tsnative.classify(tiny_classifier.path, folder, batch_size=2)

    paths = sorted(folder.iterdir())
    assert [r.path for r in results] == [str(p) for p in paths]
    bad = {Path(r.path).name: r for r in results if r.error is not None}
    assert sorted(bad) == ["b_notes.png", "d_truncated.png"]
    assert f"'{folder / 'b_notes.png'}' is not a JPEG or PNG image" in bad["b_notes.png"].error
    assert str(folder / "d_truncated.png") in bad["d_truncated.png"].error
    for result in bad.values():
        assert result.predictions == []
        assert result.top is None
    good = [r for r in results if r.error is None]
    assert_matches_eager(good, tiny_classifier, [Path(r.path) for r in good])


def test_missing_file_is_reported_in_its_result(
    tiny_classifier: Classifier, photo_dir: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.jpg"
    results = tsnative.classify(tiny_classifier.path, [photo_dir / "chelsea.png", missing])
    assert results[0].error is None
    assert results[1].path == str(missing)
    assert results[1].error == f"cannot read image '{missing}': no such file"


def test_a_folder_without_images_is_an_input_error(
    tiny_classifier: Classifier, tmp_path: Path
) -> None:
    # As ts-infer and tsnative.ray say it: an empty result would look like success.
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(tsnative.InputError, match=f"^no JPEG or PNG images found in '{tmp_path}'$"):
        tsnative.classify(tiny_classifier.path, tmp_path)


def test_no_paths_give_no_results(tiny_classifier: Classifier) -> None:
    assert tsnative.classify(tiny_classifier.path, []) == []


def assert_same_results(
    actual: list[tsnative.Classification], expected: list[tsnative.Classification]
) -> None:
    """Equal paths, errors, indices and labels; float32-close probabilities (a convolution's
    CPU kernel may sum in another order for another batch size)."""
    rtol, atol = TOLERANCES[torch.float32]
    assert [(r.path, r.error) for r in actual] == [(r.path, r.error) for r in expected]
    for a, e in zip(actual, expected, strict=True):
        assert [(p.index, p.label) for p in a.predictions] == [
            (p.index, p.label) for p in e.predictions
        ]
        torch.testing.assert_close(
            torch.tensor([p.probability for p in a.predictions]),
            torch.tensor([p.probability for p in e.predictions]),
            rtol=rtol,
            atol=atol,
        )


def test_batch_size_does_not_change_the_results(
    tiny_classifier: Classifier, photo_dir: Path
) -> None:
    one = tsnative.classify(tiny_classifier.path, photo_dir, batch_size=1)
    assert_same_results(tsnative.classify(tiny_classifier.path, photo_dir, batch_size=4), one)
    assert_same_results(tsnative.classify(tiny_classifier.path, photo_dir, batch_size=64), one)


def test_without_crop_images_of_different_sizes_are_classified(
    tiny_classifier: Classifier, photo_dir: Path
) -> None:
    preprocess = {**tiny_classifier.preprocess, "resize": 40, "crop": 0}
    results = tsnative.classify(tiny_classifier.path, photo_dir, preprocess=preprocess)
    # The reference runs each image on its own: the shapes differ (40x40, 40x60, ...).
    paths = _photo_paths(photo_dir)
    for result, path in zip(results, paths, strict=True):
        assert_matches_eager([result], tiny_classifier, [path], preprocess=preprocess)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_is_a_value_error(
    tiny_classifier: Classifier, photo_dir: Path, batch_size: int
) -> None:
    with pytest.raises(ValueError, match=f"batch size must be at least 1, got {batch_size}"):
        tsnative.classify(tiny_classifier.path, photo_dir, batch_size=batch_size)


@pytest.mark.parametrize(("k", "expected"), [(1, 1), (5, 5), (None, 5)])
def test_k_predictions_per_image(
    tiny_classifier: Classifier, photo_dir: Path, k: int | None, expected: int
) -> None:
    results = tsnative.classify(tiny_classifier.path, photo_dir, k=k)
    assert {len(r.predictions) for r in results} == {expected}


@pytest.mark.parametrize("k", [7, 1000])
def test_k_above_the_number_of_classes_is_a_value_error(
    tiny_classifier: Classifier, photo_dir: Path, k: int
) -> None:
    with pytest.raises(ValueError, match=rf"^top-k of {k} classes, but the output has 5 "):
        tsnative.classify(tiny_classifier.path, photo_dir, k=k)


def test_progress_bar_with_captured_output(
    tiny_classifier: Classifier, photo_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    quiet = tsnative.classify(tiny_classifier.path, photo_dir, batch_size=2)
    assert capfd.readouterr() == ("", "")  # stderr is not a terminal: no bar by default
    shown = tsnative.classify(tiny_classifier.path, photo_dir, batch_size=2, progress=True)
    captured = capfd.readouterr()
    assert shown == quiet
    assert captured.out == ""
    assert "classifying" in captured.err
    assert "5/5" in captured.err


def test_probabilities_are_a_distribution(tiny_classifier: Classifier, photo_dir: Path) -> None:
    """With k = all classes, the probabilities sum to one and are sorted."""
    for result in tsnative.classify(tiny_classifier.path, photo_dir, k=5):
        probabilities = np.array([p.probability for p in result.predictions])
        assert np.all(np.diff(probabilities) <= 0)
        assert probabilities.sum() == pytest.approx(1, abs=TOLERANCES[torch.float32][1])
