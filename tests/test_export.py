"""tsnative.export: script / trace / auto, the metadata it writes into the archive, and the
check against eager PyTorch that refuses a trace that froze the wrong branch.

The metadata is read back two ways: through the native core (tsnative.load(...).labels /
.preprocess) and, independently, from the zip archive with zipfile + json.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import tsnative
from helpers import IMAGENET_MEAN, IMAGENET_STD, assert_outputs_equal, run_python
from models import ZOO, MyModule, build
from torch import Tensor, nn

METADATA_KEYS = {
    "format",
    "version",
    "tsnative_version",
    "export_method",
    "labels",
    "input_shape",
    "input_dtype",
    "preprocess",
}
IMAGENET_PREPROCESS = {
    "resize": 256,
    "crop": 224,
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
    "color": "rgb",
}
POSITIVE = torch.tensor([1.0, 2.0, 0.5, 0.25])  # MyModule: sum > 0 -> weight.mv(x), shape [3]
NEGATIVE = torch.tensor([-1.0, -2.0, 0.5, 0.25])  # sum <= 0 -> weight + x, shape [3, 4]


def archive_metadata(path: Path) -> dict[str, Any]:
    """extra/tsnative.json read straight from the zip, not through tsnative."""
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith("/extra/tsnative.json")]
        assert len(names) == 1, archive.namelist()
        assert names[0].count("/") == 2, names  # <archive>/extra/tsnative.json
        return json.loads(archive.read(names[0]))


# --- Models TorchScript cannot compile but tracing can record ------------------------------


class KwargsForward(nn.Module):
    """`**kwargs` in forward: torch.jit.script refuses variadic arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: Tensor, **kwargs: Any) -> Tensor:
        return self.linear(x)


class ReduceHelper(nn.Module):
    """A helper using functools.reduce, which TorchScript does not support."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

    def forward(self, x: Tensor) -> Tensor:
        return functools.reduce(operator.add, [layer(x) for layer in self.layers])


def _seeded(factory: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return factory().eval()


# --- Methods --------------------------------------------------------------------------------

# (ZOO model, method asked for, method expected in the metadata)
ZOO_EXPORTS = [
    ("cnn_bn_dropout", "script", "script"),
    ("cnn_bn_dropout", "trace", "trace"),
    ("cnn_bn_dropout", "auto", "script"),
    ("lstm", "trace", "trace"),
    ("multi_io", "auto", "script"),
    ("with_exports", "script", "script"),
    ("embedding_int64", "trace", "trace"),
    ("scalar_args", "auto", "script"),
    ("my_module", "auto", "script"),
]


@pytest.mark.parametrize(("name", "method", "used"), ZOO_EXPORTS)
def test_zoo_models_export_and_match_eager(
    tmp_path: Path, name: str, method: str, used: str
) -> None:
    spec = ZOO[name]
    cases = list(spec.cases)
    model = build(name)
    example = spec.cases[cases[0]]()
    path = tmp_path / "model.pt"
    exported = tsnative.export(model, example, path, method=method)  # type: ignore[arg-type]
    assert archive_metadata(path)["export_method"] == used
    assert exported.path == str(path)
    # The saved file, loaded afresh, on every case (including ones not seen at export).
    native = tsnative.load(path)
    for case in cases:
        inputs = spec.cases[case]()
        with torch.no_grad():
            expected = model(*inputs)
        assert_outputs_equal(native(*inputs), expected, exact=False, path=f"{name}/{case}")


@pytest.mark.parametrize("factory", [KwargsForward, ReduceHelper])
def test_auto_traces_what_cannot_be_scripted(tmp_path: Path, factory: type[nn.Module]) -> None:
    model = _seeded(factory)
    with pytest.raises(Exception):  # noqa: B017 (whatever TorchScript raises)
        torch.jit.script(model)
    x = torch.randn(2, 4)
    tsnative.export(model, x, tmp_path / "m.pt", method="auto")
    assert archive_metadata(tmp_path / "m.pt")["export_method"] == "trace"
    y = torch.randn(5, 4)
    with torch.no_grad():
        expected = model(y)
    assert_outputs_equal(tsnative.load(tmp_path / "m.pt")(y), expected, exact=False)


@pytest.mark.parametrize("factory", [KwargsForward, ReduceHelper])
def test_script_of_an_unscriptable_model_is_an_export_error(
    tmp_path: Path, factory: type[nn.Module]
) -> None:
    path = tmp_path / "m.pt"
    with pytest.raises(tsnative.ExportError, match=r"^torch\.jit\.script failed: "):
        tsnative.export(_seeded(factory), torch.randn(2, 4), path, method="script")
    assert not path.exists()


def test_trace_of_an_untraceable_model_is_an_export_error(tmp_path: Path) -> None:
    # str / bool / None arguments cannot be traced.
    inputs = ZOO["scalar_args"].cases["sum_bias"]()
    path = tmp_path / "m.pt"
    with pytest.raises(tsnative.ExportError, match=r"^torch\.jit\.trace failed: "):
        tsnative.export(build("scalar_args"), inputs, path, method="trace")
    assert not path.exists()


def test_bad_method_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    with pytest.raises(ValueError, match=r"method must be 'auto', 'script' or 'trace', not 'onnx'"):
        tsnative.export(build("identity"), torch.ones(2), path, method="onnx")  # type: ignore[arg-type]
    assert not path.exists()


# --- The tutorial's MyModule: a trace that freezes a branch ---------------------------------


@pytest.mark.parametrize(
    ("example", "check", "check_inputs"),
    [
        pytest.param(POSITIVE, NEGATIVE, [NEGATIVE], id="negative_check"),
        pytest.param(NEGATIVE, POSITIVE, [(POSITIVE,)], id="positive_check_as_tuple"),
        pytest.param(POSITIVE, NEGATIVE, [POSITIVE * 2, NEGATIVE], id="second_check"),
    ],
)
def test_trace_that_diverges_on_a_check_input_is_refused(
    tmp_path: Path, example: Tensor, check: Tensor, check_inputs: list[Any]
) -> None:
    model = MyModule(3, 4).eval()
    path = tmp_path / "my_module.pt"
    with pytest.raises(tsnative.ExportError) as error:
        tsnative.export(model, example, path, method="trace", check_inputs=check_inputs)
    message = str(error.value)
    number = len(check_inputs)  # the diverging check input is the last one, numbered from 1
    assert f"the traced model does not match the eager model on check input #{number}" in message
    assert "control flow" in message
    assert "method='script'" in message
    assert "Tracing records the one path the example input took" in message
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial one


def test_refused_export_leaves_an_existing_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "my_module.pt"
    path.write_bytes(b"the previous model")
    with pytest.raises(tsnative.ExportError, match="check input #1"):
        tsnative.export(
            MyModule(3, 4).eval(), POSITIVE, path, method="trace", check_inputs=[NEGATIVE]
        )
    assert path.read_bytes() == b"the previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["my_module.pt"]


def test_successful_export_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"the previous model")
    tsnative.export(build("doubler"), torch.ones(3), path)
    assert_outputs_equal(tsnative.load(path)(torch.ones(3)), torch.full((3,), 2.0), exact=True)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_scripted_my_module_takes_both_branches(tmp_path: Path) -> None:
    model = MyModule(3, 4).eval()
    path = tmp_path / "my_module.pt"
    tsnative.export(model, POSITIVE, path, method="script", check_inputs=[NEGATIVE])
    native = tsnative.load(path)
    for x, shape in ((POSITIVE, (3,)), (NEGATIVE, (3, 4))):
        with torch.no_grad():
            expected = model(x)
        assert expected.shape == shape
        assert_outputs_equal(native(x), expected, exact=False)


# --- Metadata: labels and preprocessing ----------------------------------------------------


def _labels_file(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("zero\r\none, with a comma\ntwo\n\n")
    return path


@pytest.mark.parametrize(
    ("make_labels", "expected"),
    [
        pytest.param(lambda tmp: ["a", "b c", "d"], ["a", "b c", "d"], id="list"),
        pytest.param(lambda tmp: ("x", "y", "z"), ["x", "y", "z"], id="tuple"),
        pytest.param(_labels_file, ["zero", "one, with a comma", "two"], id="file_path"),
        pytest.param(
            lambda tmp: str(_labels_file(tmp)), ["zero", "one, with a comma", "two"], id="file_str"
        ),
        pytest.param(lambda tmp: None, [], id="none"),
    ],
)
def test_labels_are_carried(tmp_path: Path, make_labels: Any, expected: list[str]) -> None:
    path = tmp_path / "m.pt"
    exported = tsnative.export(
        build("identity"), torch.ones(2, 3), path, labels=make_labels(tmp_path)
    )
    assert exported.labels == expected
    assert tsnative.load(path).labels == expected
    assert archive_metadata(path)["labels"] == expected


@pytest.mark.parametrize("count", [2, 4])
def test_labels_not_one_per_class_are_an_export_error(tmp_path: Path, count: int) -> None:
    path = tmp_path / "m.pt"
    labels = [f"class {i}" for i in range(count)]
    with pytest.raises(tsnative.ExportError, match=rf"^{count} labels for a model with 3 classes"):
        tsnative.export(build("identity"), torch.ones(2, 3), path, labels=labels)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_imagenet_labels(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    tsnative.export(build("identity"), torch.ones(1, 1000), path, labels="imagenet")
    expected = (Path(tsnative.__file__).parent / "data" / "imagenet_classes.txt").read_text()
    for labels in (tsnative.load(path).labels, archive_metadata(path)["labels"]):
        assert len(labels) == 1000
        assert labels[0] == "tench"
        assert labels[281] == "tabby"
        assert labels == expected.splitlines()


def test_missing_labels_file_is_an_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    path = tmp_path / "m.pt"
    with pytest.raises(tsnative.InputError, match=f"cannot read labels file '{missing}'"):
        tsnative.export(build("identity"), torch.ones(2), path, labels=missing)
    assert not path.exists()


@pytest.mark.parametrize(
    ("preprocess", "expected"),
    [
        pytest.param("imagenet", IMAGENET_PREPROCESS, id="imagenet"),
        pytest.param(
            {"resize": 40, "crop": 32, "mean": [0.5], "std": [0.25], "color": "grayscale"},
            {"resize": 40, "crop": 32, "mean": [0.5], "std": [0.25], "color": "grayscale"},
            id="full_dict",
        ),
        pytest.param(
            {"crop": 200, "mean": (0.1, 0.2, 0.3)},
            {**IMAGENET_PREPROCESS, "crop": 200, "mean": [0.1, 0.2, 0.3]},
            id="partial_dict",
        ),
        pytest.param(
            {"resize": 0, "crop": 0, "mean": [], "std": []},
            {"resize": 0, "crop": 0, "mean": [], "std": [], "color": "rgb"},
            id="no_preprocessing",
        ),
    ],
)
def test_preprocess_is_carried(tmp_path: Path, preprocess: Any, expected: dict[str, Any]) -> None:
    path = tmp_path / "m.pt"
    tsnative.export(build("identity"), torch.ones(1, 3, 8, 8), path, preprocess=preprocess)
    assert tsnative.load(path).preprocess == expected
    assert archive_metadata(path)["preprocess"] == expected


def test_archive_metadata_format(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    model, example = build("cnn_bn_dropout"), torch.randn(2, 3, 16, 16)
    labels = [f"class {i}" for i in range(model.eval()(example).shape[-1])]
    tsnative.export(
        model, example, path, method="trace", labels=labels, preprocess={"resize": 20, "crop": 16}
    )
    metadata = archive_metadata(path)
    assert set(metadata) == METADATA_KEYS
    assert metadata["format"] == "tsnative-metadata"
    assert metadata["version"] == 1
    assert metadata["tsnative_version"] == tsnative.__version__
    assert metadata["export_method"] == "trace"
    assert metadata["input_shape"] == [2, 3, 16, 16]
    assert metadata["input_dtype"] == "float32"
    assert metadata["labels"] == labels
    assert metadata["preprocess"] == {**IMAGENET_PREPROCESS, "resize": 20, "crop": 16}


def test_without_labels_or_preprocess(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    tsnative.export(build("identity"), torch.ones(4), path)
    metadata = archive_metadata(path)
    assert metadata["labels"] == []
    assert metadata["preprocess"] is None
    assert metadata["input_shape"] == [4]
    assert metadata["input_dtype"] == "float32"
    loaded = tsnative.load(path)
    assert loaded.labels == []
    assert loaded.preprocess is None


@pytest.mark.parametrize(
    ("preprocess", "error", "message"),
    [
        pytest.param(
            {"size": 3, "crop": 2},
            ValueError,
            r"unknown preprocess keys \['size'\]; expected \['resize', 'crop', 'mean', 'std', "
            r"'color'\]",
            id="unknown_key",
        ),
        pytest.param(
            {"std": [0.2, 0.0, 0.2]},
            ValueError,
            "std values must be finite and non-zero, got 0",
            id="std_zero",
        ),
        pytest.param(
            {"resize": 100, "crop": 200},
            ValueError,
            "crop 200 is larger than resize 100",
            id="crop_larger_than_resize",
        ),
        pytest.param(
            {"mean": [0.5, 0.5]},
            ValueError,
            "mean and std must have the same number of values, got 2 and 3",
            id="mean_std_lengths",
        ),
        pytest.param({"color": "sepia"}, ValueError, "unknown colour mode 'sepia'", id="color"),
        pytest.param("resnet", TypeError, "preprocess must be 'imagenet' or a dict", id="name"),
    ],
)
def test_bad_preprocess_is_refused_with_the_cause(
    tmp_path: Path, preprocess: Any, error: type[Exception], message: str
) -> None:
    path = tmp_path / "m.pt"
    with pytest.raises(error, match=message):
        tsnative.export(build("identity"), torch.ones(2), path, preprocess=preprocess)
    assert list(tmp_path.iterdir()) == []


def test_torchscript_deprecation_is_said_once_in_tsnative_words(tmp_path: Path) -> None:
    # torch (2.13 as a DeprecationWarning, 2.15 louder) warns on every torch.jit call; two
    # exports in a fresh process say it once, and name the successor.
    result = run_python(
        f"""
import warnings, torch, tsnative
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    probe = torch.jit.trace(torch.nn.Identity(), torch.ones(1))
torch_deprecates = any("deprecated" in str(w.message) for w in caught)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name in ("a.pt", "b.pt"):
        tsnative.export(torch.nn.Linear(2, 2), torch.ones(1, 2), f"{tmp_path}/{{name}}")
said = [str(w.message) for w in caught]
print(torch_deprecates, len(said))
print(*said, sep="\\n")
"""
    )
    assert result.returncode == 0, result.stderr
    deprecates, count = result.stdout.splitlines()[0].split()
    said = result.stdout.splitlines()[1:]
    if deprecates == "False":
        assert count == "0", said
        pytest.skip(f"torch {torch.__version__} does not deprecate TorchScript")
    assert count == "1", said
    assert said[0].startswith(f"torch {torch.__version__} deprecates TorchScript (.pt)")
    assert "tsnative.export(model, example, 'model.pt2')" in said[0]


# --- A target that cannot be written: said before any work, in a line ----------------------


@pytest.mark.parametrize("suffix", [".pt", ".pt2", ".onnx"])
def test_a_missing_folder_is_said_at_once(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "nodir" / f"m{suffix}"
    with pytest.raises(tsnative.ExportError) as error:
        tsnative.export(build("identity"), torch.ones(2, 3), path)
    folder = str(path.parent)
    assert str(error.value) == f"cannot write {str(path)!r}: there is no folder {folder!r}"


def test_a_folder_in_the_way_is_said_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    path.mkdir()
    with pytest.raises(tsnative.ExportError, match=r"^cannot write '.*m\.pt': Is a directory$"):
        tsnative.export(build("identity"), torch.ones(2, 3), path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no partial file left


def test_a_folder_without_write_permission_is_said_with_the_reason(tmp_path: Path) -> None:
    # root writes into a 0o555 folder anyway; sysfs refuses new files to root too.
    if os.geteuid() == 0:
        folder = Path("/sys")
    else:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o555)
    path = folder / "tsnative-test.pt"
    with pytest.raises(tsnative.ExportError) as error:
        tsnative.export(build("identity"), torch.ones(2, 3), path)
    assert str(error.value) == f"cannot write {str(path)!r}: Permission denied"
