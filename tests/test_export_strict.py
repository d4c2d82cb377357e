"""export's rule for a trace it cannot trust: a model whose class Python cannot show the source
of (defined in a REPL, `python -c`, stdin, exec) cannot be scripted, so method="auto" traces
it; if the tracer warned (a tensor made a Python bool: data-dependent control flow, frozen),
the file could answer differently from the model on inputs unlike the example. strict=True
(the default) refuses it; strict=False writes it with an ExportWarning. torch.export refuses
the model itself (.pt2, .onnx).

Each model is defined by exec() of source text, so that inspect finds no source, as in a REPL;
one case runs a whole user script on a fresh Python's stdin.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import tsnative
from helpers import run_python
from torch import nn

DATA_DEPENDENT = """
class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1
"""
NO_BRANCH = """
class NoBranch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x):
        return torch.relu(self.linear(x))
"""
POSITIVE = torch.ones(1, 3)
NEGATIVE = -3 * torch.ones(1, 3)


def without_source(source: str) -> nn.Module:
    """The one class `source` defines, built where inspect.getsource cannot see it."""
    namespace: dict[str, Any] = {"torch": torch}
    exec(compile(source, "<stdin>", "exec"), namespace)
    (model_class,) = (v for v in namespace.values() if isinstance(v, type))
    torch.manual_seed(0)
    return model_class().eval()


def test_the_model_cannot_be_scripted_so_auto_traces() -> None:
    # The premise of this file: without source, torch.jit.script fails.
    with pytest.raises(Exception, match="source"):
        torch.jit.script(without_source(DATA_DEPENDENT))


@pytest.mark.parametrize("method", ["auto", "trace"])
def test_a_trace_the_tracer_warned_about_is_refused(tmp_path: Path, method: str) -> None:
    path = tmp_path / "dd.pt"
    model = without_source(DATA_DEPENDENT)
    with pytest.raises(tsnative.ExportError) as error:
        tsnative.export(model, POSITIVE, path, method=method)  # type: ignore[arg-type]
    message = str(error.value)
    assert message.startswith("not written: the traced file may not equal the model")
    assert "<stdin>:4: Converting a tensor to a Python boolean" in message  # where, as it said
    assert "strict=False" in message and "method='script'" in message and ".pt2" in message
    if method == "auto":
        assert "method='auto' traced it because torch.jit.script failed" in message
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial one


def test_strict_false_writes_the_trace_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "dd.pt"
    model = without_source(DATA_DEPENDENT)
    with pytest.warns(tsnative.ExportWarning, match=r"written with strict=False: .*Python boolean"):
        written = tsnative.export(model, POSITIVE, path, strict=False)
    # What the warning is about: the frozen branch answers as the example did.
    torch.testing.assert_close(written(POSITIVE), model(POSITIVE))
    assert not torch.equal(written(NEGATIVE), model(NEGATIVE))
    torch.testing.assert_close(written(NEGATIVE), NEGATIVE * 2)  # eager says NEGATIVE - 1


def test_a_trace_without_warnings_is_written_silently(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    path = tmp_path / "m.pt"
    model = without_source(NO_BRANCH)
    x = torch.randn(4, 3)
    written = tsnative.export(model, x, path)
    assert [str(w.message) for w in recwarn if issubclass(w.category, UserWarning)] == []
    torch.testing.assert_close(written(x), model(x), rtol=1e-5, atol=1e-6)
    assert tsnative.load(path).call("forward", -x).shape == (4, 2)


@pytest.mark.parametrize(
    ("suffix", "needs"),
    [pytest.param(".pt2", None, id="aoti"), pytest.param(".onnx", "onnxscript", id="onnx")],
)
def test_torch_export_formats_refuse_the_data_dependent_branch(
    tmp_path: Path, suffix: str, needs: str | None
) -> None:
    if needs:
        pytest.importorskip(needs, reason="the onnx extra is not installed")
    path = tmp_path / f"dd{suffix}"
    with pytest.raises(tsnative.ExportError, match=r"data-dependent expression") as error:
        tsnative.export(without_source(DATA_DEPENDENT), POSITIVE, path)
    assert str(error.value).startswith("cannot export to ")
    assert list(tmp_path.iterdir()) == []


def test_a_script_on_stdin_gets_the_refusal(tmp_path: Path) -> None:
    # As a user runs it: `python - < script.py`, the class's source nowhere to be found.
    script = textwrap.dedent(
        f"""
        import torch, tsnative
        {textwrap.indent(DATA_DEPENDENT, "        ").strip()}
        try:
            tsnative.export(DataDependent(), torch.ones(1, 3), {str(tmp_path / "dd.pt")!r})
        except tsnative.ExportError as error:
            print("refused:", error)
        else:
            print("written")
        """
    )
    result = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: not written: the traced file may not equal")
    assert not (tmp_path / "dd.pt").exists()


@pytest.mark.parametrize(
    ("suffix", "name", "needs"),
    [
        pytest.param(".pt2", "AOTInductor", None, id="aoti"),
        pytest.param(".onnx", "ONNX", "onnxscript", id="onnx"),
    ],
)
def test_an_export_shows_tsnative_words_only(
    tmp_path: Path, suffix: str, name: str, needs: str | None
) -> None:
    # torch.export logs the FX graph of a failure (twice), and the ONNX exporter four lines
    # about torchvision on every export: the user sees the ExportError, nothing besides.
    if needs:
        pytest.importorskip(needs, reason="the onnx extra is not installed")
    script = (
        "import torch, tsnative\n"
        + DATA_DEPENDENT
        + textwrap.dedent(
            f"""
        folder = {str(tmp_path)!r}
        try:
            tsnative.export(DataDependent(), torch.ones(1, 3), folder + "/dd{suffix}")
        except tsnative.ExportError as error:
            print(str(error).split(":")[0])
        tsnative.export(torch.nn.Linear(3, 2), torch.ones(2, 3), folder + "/ok{suffix}")
        print("written")
        """
        )
    )
    result = run_python(script)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [f"cannot export to {name}", "written"]
