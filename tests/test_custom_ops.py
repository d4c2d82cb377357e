"""Models that call operators from a shared library of their own (TORCH_LIBRARY), as in the
C++ loading tutorial: tsnative.load_library and ts-infer --load-library, against eager and
against 2x + y by hand; the error when the library was not loaded names the operator.

The library (tests/custom_op/twice_plus.cpp) is compiled once per session against the torch
under test. Each check runs in a fresh subprocess: operators, once registered, stay for the
life of a process, and the pytest process registers this one to script the model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import run_cli, run_python
from torch import Tensor

SOURCE = Path(__file__).parent / "custom_op" / "twice_plus.cpp"
MISSING = (
    "it calls the operator accop::twice_plus, which no loaded library registers: load the "
    "library that defines it first (tsnative.load_library(path), ts-infer --load-library FILE)"
)


def _compile(out: Path) -> None:
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    launcher = [shutil.which("ccache")] if shutil.which("ccache") else []
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    libraries = cpp_extension.library_paths()
    command = [
        *launcher,
        compiler,
        "-shared",
        "-fPIC",
        "-O1",
        "-std=c++20",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        str(SOURCE),
        "-o",
        str(out),
        *(f"-I{path}" for path in cpp_extension.include_paths()),
        *(f"-L{path}" for path in libraries),
        *(f"-Wl,-rpath,{path}" for path in libraries),
        "-lc10",
        "-ltorch_cpu",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("custom_op") / "libtwice_plus.so"
    _compile(path)
    return path


class CallsTwicePlus(torch.nn.Module):
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.ops.accop.twice_plus(x, y).relu()


@pytest.fixture(scope="session")
def model(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.ops.load_library(str(library))  # scripting needs the operator's schema
    path = tmp_path_factory.mktemp("custom_op_model") / "twice_plus.pt"
    torch.jit.script(CallsTwicePlus()).save(str(path))
    return path


def test_without_the_library_the_error_names_the_operator(model: Path, ts_infer: Path) -> None:
    result = run_python(
        f"import tsnative\ntry:\n    tsnative.load({str(model)!r})\n"
        "except tsnative.ModelLoadError as e:\n    print(e)\n"
    )
    assert result.stdout.strip() == f"cannot load '{model}': {MISSING}", result.stderr[-2000:]
    code, _, stderr = run_cli(ts_infer, model, "--shape", "2,3")
    assert (code, stderr) == (1, f"ts-infer: error: cannot load '{model}': {MISSING}\n")


def test_with_the_library_it_runs_like_eager(library: Path, model: Path) -> None:
    result = run_python(
        "import torch, tsnative\n"
        f"tsnative.load_library({str(library)!r})\n"
        f"native = tsnative.load({str(model)!r})\n"
        "torch.manual_seed(0)\n"
        "x, y = torch.randn(4, 5), torch.randn(4, 5)\n"
        "expected = (2 * x + y).relu()\n"  # by hand
        "eager = torch.ops.accop.twice_plus(x, y).relu()\n"  # the operator, from Python
        "actual = native(x, y)\n"
        "assert torch.equal(actual, expected), (actual, expected)\n"
        "assert torch.equal(actual, eager)\n"
        "print(native.signature())\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "forward(Tensor x, Tensor y) -> Tensor"


def test_ts_infer_load_library(library: Path, model: Path, ts_infer: Path, tmp_path: Path) -> None:
    x, y = torch.randn(3, 2), torch.randn(3, 2)
    torch.save(x, tmp_path / "x.pt")
    torch.save(y, tmp_path / "y.pt")
    out = tmp_path / "out.pt"
    code, stdout, stderr = run_cli(
        ts_infer,
        model,
        "--load-library",
        library,
        "--input",
        tmp_path / "x.pt",
        "--input",
        tmp_path / "y.pt",
        "--save-output",
        out,
    )
    assert code == 0, stderr
    assert torch.equal(torch.load(out), (2 * x + y).relu())
    assert "DONE" in stdout


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(lambda tmp: tmp / "nowhere.so", "no such file", id="missing"),
        pytest.param(
            lambda tmp: (
                (tmp / "text.so").write_text("not a shared library\n" * 10) and tmp / "text.so"
            ),
            "invalid ELF header",
            id="not_a_shared_object",
        ),
        pytest.param(lambda tmp: tmp, "it is a directory", id="directory"),
    ],
)
def test_a_library_that_cannot_load_is_a_clear_error(
    ts_infer: Path, model: Path, tmp_path: Path, make, reason: str
) -> None:
    path = make(tmp_path)
    result = run_python(
        f"import tsnative\ntry:\n    tsnative.load_library({str(path)!r})\n"
        "except tsnative.ModelLoadError as e:\n    print(e)\n"
    )
    message = result.stdout.strip()
    assert message.startswith(f"cannot load the operator library '{path}': "), result.stderr
    assert reason in message
    code, stdout, stderr = run_cli(ts_infer, model, "--load-library", path, "--shape", "2")
    assert (code, stdout, stderr) == (1, "", f"ts-infer: error: {message}\n")
