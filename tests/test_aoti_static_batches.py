"""AOTInductor packages that hold models compiled for one batch size beside the dynamic one
(tsnative.export's static_batches): the core runs a call of such a batch on the model compiled
for it and any other on the dynamic one, through Module and ts-infer alike; what export records;
packages whose static-batch entries are wrong.

Which model ran is told apart by a hand-made package whose batch-1 model computes another
function than its dynamic one (a package tsnative exports computes the same in both).
"""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import tsnative
from helpers import assert_outputs_equal, run_cli
from test_aoti import AOTI_TOLERANCES

_C = tsnative._C


def _linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(6, 3).eval()


def _compiled(model: torch.nn.Module, example: torch.Tensor, dynamic: bool, entries: dict):
    shapes = ({0: torch.export.Dim.DYNAMIC},) if dynamic else None
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=shapes)
        return torch._inductor.aot_compile(
            program.module(),
            (example,),
            options={"aot_inductor.package": True, "aot_inductor.metadata": entries},
        )


def _inputs_entry(shape: list) -> str:
    return json.dumps([{"name": "x", "dtype": "float32", "shape": shape}])


@pytest.fixture(scope="module")
def two_function_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package whose dynamic model is _linear(0) and whose batch-1 model is _linear(1)."""
    from torch._inductor.package import package_aoti

    dynamic_inputs = _inputs_entry([{"name": "batch", "min": 0, "max": None}, 6])
    dynamic = {_C.PACKAGE_INPUTS_KEY: dynamic_inputs, _C.PACKAGE_STATIC_BATCHES_KEY: "[1]"}
    files = {
        _C.PACKAGE_MODEL_NAME: _compiled(_linear(0), torch.randn(2, 6), True, dynamic),
        _C.static_model_name(1): _compiled(
            _linear(1), torch.randn(1, 6), False, {_C.PACKAGE_INPUTS_KEY: _inputs_entry([1, 6])}
        ),
    }
    path = tmp_path_factory.mktemp("static") / "two.pt2"
    package_aoti(str(path), files)
    return path


def test_a_call_of_a_static_batch_runs_the_model_compiled_for_it(
    two_function_package: Path, tmp_path: Path, ts_infer: Path
) -> None:
    module = tsnative.load(two_function_package)
    one, three = torch.randn(1, 6), torch.randn(3, 6)
    with torch.no_grad():
        assert_outputs_equal(module(one), _linear(1)(one), exact=False, tolerances=AOTI_TOLERANCES)
        assert_outputs_equal(
            module(three), _linear(0)(three), exact=False, tolerances=AOTI_TOLERANCES
        )
        # and not the other's: the two functions differ at batch 1
        assert not torch.allclose(module(one), _linear(0)(one), atol=1e-3)
    assert "compiled for batch 1 alone as well" in module.optimization
    # ts-infer runs the same core
    torch.save(one, tmp_path / "one.pt")
    out = tmp_path / "out.pt"
    args = ("--input", tmp_path / "one.pt", "--save-output", out)
    code, _, stderr = run_cli(ts_infer, two_function_package, *args)
    assert (code, stderr) == (0, "")
    with torch.no_grad():
        expected = _linear(1)(one)
    assert_outputs_equal(torch.load(out), expected, exact=False, tolerances=AOTI_TOLERANCES)


def _rewritten(package: Path, path: Path, model: str, **changes: str) -> Path:
    """A copy of `package` whose `model`'s metadata says other things."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            data = source.read(entry)
            if f"/aotinductor/{model}/" in entry.filename and entry.filename.endswith(
                "_metadata.json"
            ):
                data = json.dumps({**json.loads(data), **changes}).encode()
            target.writestr(entry, data)
    return path


_NOT_BATCHES = "its 'tsnative.static_batches' is not a list of distinct batch sizes of 1 or more"


@pytest.mark.parametrize(
    ("model", "changes", "message"),
    [
        ("model", {_C.PACKAGE_STATIC_BATCHES_KEY: "[1, 2]"}, "its model batch_2: "),
        ("model", {_C.PACKAGE_STATIC_BATCHES_KEY: "[0]"}, f"{_NOT_BATCHES}: a batch size below 1"),
        ("model", {_C.PACKAGE_STATIC_BATCHES_KEY: "[1, 1]"}, f"{_NOT_BATCHES}: batch 1 twice"),
        ("model", {_C.PACKAGE_STATIC_BATCHES_KEY: '"one"'}, _NOT_BATCHES),
        ("model", {_C.PACKAGE_STATIC_BATCHES_KEY: "[]"}, f"{_NOT_BATCHES}: an empty list"),
        (
            "batch_1",
            {_C.PACKAGE_INPUTS_KEY: _inputs_entry([2, 6])},
            "its model batch_1's 'tsnative.inputs' does not describe static inputs: x's first "
            "dimension is not 1",
        ),
        (
            "batch_1",
            {
                _C.PACKAGE_INPUTS_KEY: json.dumps(
                    [{"name": name, "dtype": "float32", "shape": [1, 6]} for name in ("x", "y")]
                )
            },
            "does not describe static inputs: 2 inputs where forward takes 1",
        ),
        (
            "batch_1",
            {_C.PACKAGE_INPUTS_KEY: _inputs_entry([{"name": "batch", "min": 0, "max": None}, 6])},
            "its model batch_1's 'tsnative.inputs' does not describe static inputs",
        ),
        ("batch_1", {"AOTI_DEVICE_KEY": "cuda"}, "its model batch_1: it was compiled for cuda"),
    ],
)
def test_wrong_static_batch_entries_are_one_clear_error(
    two_function_package: Path, tmp_path: Path, model: str, changes: dict, message: str
) -> None:
    bad = _rewritten(two_function_package, tmp_path / "bad.pt2", model, **changes)
    with pytest.raises(tsnative.ModelLoadError, match=repr(str(bad))) as raised:
        tsnative.load(bad)
    assert message in str(raised.value)


def test_a_static_model_too_large_to_warm_up_on_zeros_is_left_cold(
    two_function_package: Path, tmp_path: Path
) -> None:
    """Each static model is warmed up on zeros of its own shapes: a package's (a guess, as a
    warm-up input made from metadata) too large to make is skipped, not allocated."""
    huge = _rewritten(
        two_function_package,
        tmp_path / "huge.pt2",
        "batch_1",
        **{_C.PACKAGE_INPUTS_KEY: _inputs_entry([1, 10**6, 10**6, 6])},
    )
    three = torch.randn(3, 6)
    module = tsnative.load(huge, warmup_inputs=(three,))
    with torch.no_grad():
        assert_outputs_equal(
            module(three), _linear(0)(three), exact=False, tolerances=AOTI_TOLERANCES
        )


class SmallConvNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.head = torch.nn.Linear(8 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).relu().flatten(1))


def test_export_with_static_batches_matches_eager_at_every_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = SmallConvNet().eval()
    path = tmp_path / "net.pt2"
    module = tsnative.export(
        model, torch.randn(2, 3, 8, 8), path, static_batches=[1, 4], progress=True
    )
    progress = capsys.readouterr().err
    for which in ("(dynamic batch)", "(batch 1)", "(batch 4)"):
        assert f"AOTInductor: compiling net.pt2 {which}" in progress
    assert "compiled for batch 1, 4 alone as well" in module.optimization
    for batch in (1, 3, 4, 5):
        x = torch.randn(batch, 3, 8, 8)
        with torch.no_grad():
            assert_outputs_equal(module(x), model(x), exact=False, tolerances=AOTI_TOLERANCES)
    with zipfile.ZipFile(path) as archive:
        models = {name.split("/")[3] for name in archive.namelist() if "/aotinductor/" in name}
        entries = {
            name.split("/")[3]: json.loads(archive.read(name))
            for name in archive.namelist()
            if name.endswith("wrapper_metadata.json")
        }
    assert models == {"model", "batch_1", "batch_4"}
    assert json.loads(entries["model"][_C.PACKAGE_STATIC_BATCHES_KEY]) == [1, 4]
    assert json.loads(entries["batch_4"][_C.PACKAGE_INPUTS_KEY])[0]["shape"] == [4, 3, 8, 8]
    # the Inductor configs it was compiled with, recorded
    assert json.loads(entries["model"][_C.PACKAGE_INDUCTOR_CONFIGS_KEY]) == {"freezing": True}


def test_export_checks_the_dynamic_model_where_the_example_batch_is_listed_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example (batch 2) and its grown copy (batch 3) would both run static models: the
    dynamic one, which answers every other batch, must still be compared with eager."""
    export_module = importlib.import_module("tsnative.export")
    checked: list[int] = []
    compare = export_module._check_matches_eager

    def recording(model: Any, native: Any, input_sets: list, *args: Any, **kwargs: Any) -> None:
        checked.extend(inputs[0].shape[0] for _, inputs in input_sets)
        compare(model, native, input_sets, *args, **kwargs)

    monkeypatch.setattr(export_module, "_check_matches_eager", recording)
    model = SmallConvNet().eval()
    module = tsnative.export(
        model, torch.randn(2, 3, 8, 8), tmp_path / "net.pt2", static_batches=[2, 3]
    )
    # batch 4 is the smallest no static model answers; the example's batch is checked once
    assert sorted(checked) == [2, 3, 4]
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert_outputs_equal(module(x), model(x), exact=False, tolerances=AOTI_TOLERANCES)


def test_static_batches_arguments_are_checked_before_any_work(tmp_path: Path) -> None:
    model, x = SmallConvNet().eval(), torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"for AOTInductor packages \(\.pt2\), not TorchScript"):
        tsnative.export(model, x, tmp_path / "m.pt", static_batches=[1])
    with pytest.raises(ValueError, match="lists the example's batch, 2, for which the package"):
        tsnative.export(model, x, tmp_path / "m.pt2", static_batches=[1, 2], dynamic_batch=False)
    with pytest.raises(ValueError, match="batch sizes of 1 or more, not"):
        tsnative.export(model, x, tmp_path / "m.pt2", static_batches=[0])
    with pytest.raises(ValueError, match="batch sizes of 1 or more, not"):
        tsnative.export(model, x, tmp_path / "m.pt2", static_batches=[True])
    with pytest.raises(ValueError, match="lists a batch size twice"):
        tsnative.export(model, x, tmp_path / "m.pt2", static_batches=[8, 8])
    assert list(tmp_path.iterdir()) == []
