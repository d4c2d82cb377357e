"""tsnative.compare: eager against TorchScript (each optimize level) and ONNX Runtime, as data
and as a table; its differences checked against ones computed here from the same files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import tsnative
from models import ZOO, build
from test_onnx import ONNX_MISSING, needs_onnx


def _cnn_and_input() -> tuple[torch.nn.Module, torch.Tensor]:
    return build("cnn_bn_dropout"), ZOO["cnn_bn_dropout"].cases["b4"]()[0]


def test_compare_exports_each_format_and_reports_each_runner() -> None:
    model, x = _cnn_and_input()
    formats = ("torchscript", "aoti") + (("onnx",) if not ONNX_MISSING else ())
    report = tsnative.compare(model, x, formats=formats, rounds=3)
    names = [runner.name for runner in report.runners]
    assert names[:5] == [
        "eager",
        "torchscript none",
        "torchscript exact",
        "torchscript fast",
        "aoti",
    ]
    assert ("onnx" in names) == (not ONNX_MISSING)
    with torch.no_grad():
        expected = model(x)
    for runner in report.runners[1:]:
        assert not runner.error, runner.error
        assert runner.median_ms is not None and runner.median_ms > 0
        assert runner.topk_agreement == 1.0  # a 10-class classifier: top-5 of every row kept
        if not runner.reduced_precision:
            assert runner.within_tolerance and runner.max_abs <= 1e-5 * expected.abs().max()
    assert report.fastest is not None and report.fastest.within_tolerance
    table = str(report)
    assert "fastest within tolerance: " + report.fastest.name in table
    for name in names:
        assert name in table


@needs_onnx
def test_a_file_that_differs_from_eager_is_outside_tolerance(tmp_path: Path) -> None:
    """Given files, compare runs those: an ONNX file of the same architecture with other weights
    is reported with the difference computed here, outside tolerance, and never fastest."""
    model, x = _cnn_and_input()
    torch.manual_seed(1)
    other = build("cnn_bn_dropout")
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    onnx_path = tsnative.export(other, x, tmp_path / "other.onnx").path
    pt_path = tsnative.export(model, x, tmp_path / "same.pt").path
    report = tsnative.compare(
        model,
        x,
        formats=("torchscript", "onnx"),
        files={"onnx": onnx_path, "torchscript": pt_path},
        levels=("none",),
        rounds=2,
    )
    onnx = next(runner for runner in report.runners if runner.format == "onnx")
    with torch.no_grad():
        want = model(x)
    got = tsnative.load(onnx_path)(x)
    assert onnx.max_abs == pytest.approx(float((got.double() - want.double()).abs().max()))
    assert onnx.within_tolerance is False and "NO" in str(report)
    assert report.fastest is not None and report.fastest.name == "torchscript none"


def test_a_format_that_cannot_take_the_model_is_a_row_that_says_why() -> None:
    """my_module's data-dependent branch: TorchScript scripts it, torch.export refuses it."""
    x = ZOO["my_module"].cases["positive"]()[0]
    report = tsnative.compare(build("my_module"), x, levels=("none",), rounds=2)
    onnx = next(runner for runner in report.runners if runner.format == "onnx")
    assert onnx.error and onnx.median_ms is None
    if ONNX_MISSING:
        assert "ONNX" in onnx.error
    else:
        assert "not exported" in onnx.error and "if input.sum() > 0" in onnx.error
    assert report.fastest is not None and report.fastest.format == "torchscript"
    assert onnx.error in str(report)


def test_unknown_format_is_a_value_error() -> None:
    model, x = _cnn_and_input()
    with pytest.raises(ValueError, match="formats are torchscript, aoti, onnx, not 'tflite'"):
        tsnative.compare(model, x, formats=("tflite",))


def test_python_m_tsnative_compare_from_a_shell(tmp_path: Path) -> None:
    """The same report for an eager model named by its import path and a saved input."""
    x = ZOO["mlp_float64"].cases["b4"]()[0]
    torch.save(x, tmp_path / "x.pt")
    tests = Path(__file__).parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent / "examples")]),
    }
    command = [sys.executable, "-m", "tsnative", "compare", "models:mlp_float64"]
    command += ["--input", str(tmp_path / "x.pt"), "--levels", "none", "--rounds", "2", "--json"]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    runners = {runner["name"]: runner for runner in report["runners"]}
    assert runners["torchscript none"]["within_tolerance"] is True
    assert runners["torchscript none"]["outputs"][0]["max_abs"] <= 1e-12  # float64, as saved
    assert report["fastest"] in runners
    bad = subprocess.run(
        [sys.executable, "-m", "tsnative", "compare", "models:no_such", "--input", "x.pt"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "AttributeError" in bad.stderr


def _compare_in_a_shell(*args: str) -> subprocess.CompletedProcess[str]:
    tests = Path(__file__).parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent / "examples")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "tsnative", "compare", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_inputs_the_eager_model_fails_on_are_one_line(tmp_path: Path) -> None:
    # cnn_bn_dropout is float32: a float64 input fails in eager itself, before any format.
    torch.save(torch.rand(2, 3, 16, 16, dtype=torch.float64), tmp_path / "x64.pt")
    done = _compare_in_a_shell("models:SmallCNN", "--input", str(tmp_path / "x64.pt"))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.count("\n") == 1, done.stderr  # no traceback
    assert done.stderr.startswith(
        "python -m tsnative compare: ValueError: the eager model fails on these inputs "
        "(RuntimeError: "
    )


def test_a_given_file_that_cannot_load_fails_the_command(tmp_path: Path) -> None:
    torch.save(_cnn_and_input()[1], tmp_path / "x.pt")
    missing = tmp_path / "missing.pt"
    done = _compare_in_a_shell(
        "models:SmallCNN",
        "--input",
        str(tmp_path / "x.pt"),
        "--pt",
        str(missing),
        "--formats",
        "torchscript",
        "--levels",
        "none",
        "--rounds",
        "1",
    )
    assert done.returncode == 1
    assert f"cannot load '{missing}': no such file" in done.stdout  # its row in the table
    assert done.stderr == (
        f"python -m tsnative compare: torchscript none: cannot load '{missing}': no such file\n"
    )


def test_compare_from_a_shell_with_calibration_adds_the_int8_package(tmp_path: Path) -> None:
    pytest.importorskip("torchao", reason="the int8 extra (torchao) is not installed")
    x = _cnn_and_input()[1]
    generator = torch.Generator().manual_seed(4)
    torch.save(x, tmp_path / "x.pt")
    torch.save([torch.randn(x.shape, generator=generator) for _ in range(3)], tmp_path / "c.pt")
    done = _compare_in_a_shell(
        "models:SmallCNN",
        "--input",
        str(tmp_path / "x.pt"),
        "--calibration",
        str(tmp_path / "c.pt"),
        "--formats",
        "aoti",
        "--rounds",
        "2",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    runners = {runner["name"]: runner for runner in json.loads(done.stdout)["runners"]}
    int8 = runners["aoti int8"]
    assert not int8["error"], int8["error"]
    assert int8["reduced_precision"] and "int8" in int8["optimization"]
    # int8 arithmetic: further from eager than the float32 package
    assert int8["outputs"][0]["max_abs"] > runners["aoti"]["outputs"][0]["max_abs"]


def test_compare_calibration_that_is_not_a_list_of_batches_is_one_line(tmp_path: Path) -> None:
    x = tmp_path / "x.pt"
    torch.save(_cnn_and_input()[1], x)
    done = _compare_in_a_shell("models:SmallCNN", "--input", str(x), "--calibration", str(x))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"python -m tsnative compare: ValueError: --calibration {x} holds a "
        "Tensor, not a list of batches (torch.save([batch, ...]))\n"
    )


def test_help_names_every_format() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tsnative", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "TorchScript" in done.stdout and "AOTInductor" in done.stdout and "ONNX" in done.stdout


def test_compare_with_calibration_adds_an_int8_package_judged_as_reduced_precision() -> None:
    pytest.importorskip("torchao", reason="the int8 extra (torchao) is not installed")
    model, x = _cnn_and_input()
    generator = torch.Generator().manual_seed(3)
    calibration = [torch.randn(x.shape, generator=generator) for _ in range(4)]
    report = tsnative.compare(model, x, formats=("aoti",), rounds=3, calibration=calibration, k=1)
    assert [runner.name for runner in report.runners] == ["eager", "aoti", "aoti int8"]
    int8 = report.runners[2]
    assert not int8.error, int8.error
    assert int8.reduced_precision and "int8" in int8.optimization
    with torch.no_grad():
        expected = model(x)
    # int8 arithmetic: not float32's answer, but one that keeps each row's top-1
    assert int8.max_abs > 1e-5 * expected.abs().max()
    assert int8.topk_agreement is not None
    assert int8.within_tolerance == (int8.topk_agreement == 1.0)
    assert "aoti int8" in str(report) and "reduced precision: by top-k" in str(report)


def test_compare_calibration_without_aoti_is_a_value_error() -> None:
    model, x = _cnn_and_input()
    with pytest.raises(ValueError, match="formats must hold 'aoti'"):
        tsnative.compare(model, x, formats=("torchscript",), calibration=[x])


def test_compare_static_adds_a_package_compiled_for_the_inputs_shapes() -> None:
    model, x = _cnn_and_input()
    report = tsnative.compare(model, x, formats=("aoti",), rounds=3, static=True)
    assert [runner.name for runner in report.runners] == ["eager", "aoti", "aoti static"]
    static = report.runners[2]
    assert not static.error and not static.reduced_precision
    assert static.within_tolerance and static.median_ms is not None
    assert "aoti static" in str(report)
    with pytest.raises(ValueError, match="static=True adds an AOTInductor package"):
        tsnative.compare(model, x, formats=("torchscript",), static=True)
