"""The installed C++ API: examples/cpp (the tutorial's example-app) configured with CMake's
find_package(tsnative) against this installation, built, and run on an exported classifier;
its top-5 must be tsnative.classify's, label for label and to the printed precision."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import tsnative
from conftest import Classifier
from helpers import PILLOW_PROBABILITY_ATOL

EXAMPLE = Path(__file__).parents[1] / "examples" / "cpp"


@pytest.fixture(scope="session")
def example_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    build = tmp_path_factory.mktemp("example-app")
    prefix = f"{tsnative.cmake_prefix_path};{torch.utils.cmake_prefix_path}"
    launcher = ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"] if shutil.which("ccache") else []
    for command in (
        [cmake, "-S", EXAMPLE, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}", *launcher],
        [cmake, "--build", build, "-j", str(os.cpu_count() or 1)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return build / "example-app"


def test_the_package_ships_the_cmake_package_and_headers() -> None:
    root = Path(tsnative.__file__).parent
    assert (Path(tsnative.cmake_prefix_path) / "tsnative" / "tsnativeConfig.cmake").is_file()
    assert (root / "include" / "tsnative" / "tsnative.h").is_file()
    installed = {path.name for path in (root / "include" / "tsnative" / "core").iterdir()}
    assert "model.h" in installed
    assert "archive_guard.h" not in installed  # private parts stay private


def test_example_app_prints_what_classify_returns(
    example_app: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    images = sorted(photo_dir.iterdir())[:2]
    result = subprocess.run(
        [example_app, tiny_classifier.path, *images], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    expected = []
    for classification in tsnative.classify(tiny_classifier.path, images):
        expected.append(classification.path)
        expected += [
            f"  {p.label or p.index}: {100 * p.probability:.2f}%"
            for p in classification.predictions
        ]
    assert result.stdout.splitlines() == expected


def test_example_app_runs_a_package_as_it_runs_a_torchscript_file(
    example_app: Path, classifier_package: Path, photo_dir: Path
) -> None:
    """The same C++ program, unchanged, on a .pt2: the core's Model takes either format."""
    images = sorted(photo_dir.iterdir())[:2]
    result = subprocess.run(
        [example_app, classifier_package, *images], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    expected = []
    for classification in tsnative.classify(classifier_package, images):
        expected.append(classification.path)
        expected += [
            f"  {p.label or p.index}: {100 * p.probability:.2f}%"
            for p in classification.predictions
        ]
    assert result.stdout.splitlines() == expected


def test_example_app_errors(example_app: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [example_app, tmp_path / "missing.pt", tmp_path / "x.png"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr == f"example-app: cannot load '{tmp_path / 'missing.pt'}': no such file\n"


def test_the_readme_example_is_the_one_built_here(
    example_app: Path, tiny_classifier: Classifier, photo_dir: Path, tmp_path: Path
) -> None:
    # README.md shows examples/cpp/readme.cpp (less its first comment line), which was built
    # beside example-app: it compiles with the includes it shows, and runs.
    source = (EXAMPLE / "readme.cpp").read_text().split("\n", 1)[1]
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    assert f"```cpp\n{source}```\n" in readme
    shutil.copy(tiny_classifier.path, tmp_path / "classifier.pt")
    photo = sorted(photo_dir.glob("*.jpg"))[0]
    shutil.copy(photo, tmp_path / "tiger.jpg")
    result = subprocess.run(
        [example_app.parent / "readme"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (expected,) = tsnative.classify(tiny_classifier.path, photo)
    assert result.stdout == f"tiger.jpg: {expected.top.label}\n"


def test_example_app_matches_eager_on_pillows_preprocessing(
    example_app: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    # An independent reference for the C++ API, beside its agreement with tsnative.classify.
    from test_classify import eager_reference

    images = sorted(photo_dir.iterdir())
    result = subprocess.run(
        [example_app, tiny_classifier.path, *images], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    probabilities, indices = eager_reference(tiny_classifier, images, 5, tiny_classifier.preprocess)
    lines = iter(result.stdout.splitlines())
    for path, row_p, row_i in zip(images, probabilities, indices, strict=True):
        assert next(lines) == str(path)
        for p, i in zip(row_p.tolist(), row_i.tolist(), strict=True):
            label, percent = next(lines).strip().rsplit(": ", 1)
            assert label == tiny_classifier.labels[i]
            # Printed to 2 decimals: eager's within the Pillow tolerance, plus the rounding.
            assert (
                abs(float(percent.rstrip("%")) - 100 * p) <= 100 * PILLOW_PROBABILITY_ATOL + 0.005
            )
    assert next(lines, None) is None
