"""ONNX: tsnative.export to .onnx, and load / infer / Module / classify on it through ONNX
Runtime, against eager PyTorch; the parity zoo as ONNX; bad files and bad calls.

Tolerance: ONNX Runtime fuses and reorders float math (its own kernels, Gemm / LayerNorm
fusions), so outputs are held to ONNX_TOLERANCES (1e-5 of each tensor's scale, rtol 1e-5);
the worst over the zoo measured here is 1.2e-7 of the scale (ResNet-18).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import tsnative
from conftest import Classifier
from helpers import assert_outputs_equal, eager_topk, run_cli, run_python
from models import TORCH_EXPORT_REFUSES, TORCH_EXPORTABLE, ZOO, SavedModels, build, export_zoo


def _onnx_missing() -> str:
    """Why the ONNX tests cannot run here ("" when they can)."""
    for name, what in (
        ("onnxruntime", "onnxruntime"),
        ("onnxscript", "torch.onnx.export's onnxscript"),
    ):
        try:
            importlib.import_module(name)
        except ImportError:
            return f"{what} is not installed"
    return ""


ONNX_MISSING = _onnx_missing()
needs_onnx = pytest.mark.skipif(
    bool(ONNX_MISSING), reason=f"{ONNX_MISSING}: the onnx extra is not installed"
)

ONNX_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-10, 1e-10),
}


@pytest.fixture(scope="module")
def onnx_zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """Each zoo model exported to ONNX once: its path, or the exporter's reason it cannot be."""
    if ONNX_MISSING:
        pytest.skip(ONNX_MISSING)
    return export_zoo(tmp_path_factory.mktemp("onnx"), ".onnx")


def _flat(output: Any) -> tuple[torch.Tensor, ...]:
    return tuple(torch.utils._pytree.tree_leaves(output))


@needs_onnx
@pytest.mark.parametrize("name", TORCH_EXPORTABLE)
def test_zoo_model_as_onnx_matches_eager(
    onnx_zoo: dict[str, Path | str], saved_models: SavedModels, name: str
) -> None:
    """Every case of every model the exporter takes, through tsnative.load and infer; one that
    does not export fails."""
    cases = saved_models.exported_cases(name, onnx_zoo[name], "to ONNX")
    for _, _, actual, expected in cases:
        assert_outputs_equal(
            _flat(actual), _flat(expected), exact=False, tolerances=ONNX_TOLERANCES
        )


@needs_onnx
def test_what_the_exporter_refuses_says_why(onnx_zoo: dict[str, Path | str]) -> None:
    """Data-dependent control flow (torch.export cannot trace `if x.sum() > 0`) and non-tensor
    arguments: an ExportError naming the cause and suggesting .pt."""
    for name, cause in TORCH_EXPORT_REFUSES.items():
        assert isinstance(onnx_zoo[name], str), f"{name} exported: it was expected to be refused"
        assert cause in onnx_zoo[name]
    for name in ("my_module", "scalar_args"):
        assert "export to .pt (TorchScript) instead" in onnx_zoo[name]


@needs_onnx
def test_onnx_file_is_onnx_with_metadata(
    classifier_onnx: Path, tiny_classifier: Classifier
) -> None:
    """The file is an ONNX model by ONNX's own reader and checker, batch dynamic, with labels
    and preprocessing in metadata_props; Module reports them."""
    import onnx

    proto = onnx.load(str(classifier_onnx))
    onnx.checker.check_model(proto)
    props = {entry.key: entry.value for entry in proto.metadata_props}
    assert "tsnative.json" in props
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic: dynamic
    module = tsnative.load(classifier_onnx)
    assert module.labels == tiny_classifier.labels
    assert module.preprocess == {
        key: tiny_classifier.preprocess.get(key, value) for key, value in module.preprocess.items()
    }
    assert module.signature() == (
        "forward(Tensor x: float32[batch, 3, 40, 40]) -> (Tensor output: float32[batch, 5])"
    )
    assert "ONNX Runtime" in module.optimization
    x = torch.rand(3, 3, 40, 40)
    with torch.no_grad():
        expected = tiny_classifier.eager(x)
    probabilities, indices = module.topk(x, k=3)
    want_p, want_i = eager_topk(expected, 3)
    assert torch.equal(indices, want_i)
    torch.testing.assert_close(probabilities, want_p, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def classifier_onnx(classifier_as: Callable[[str], Path]) -> Path:
    if ONNX_MISSING:
        pytest.skip(ONNX_MISSING)
    return classifier_as("onnx")


@needs_onnx
def test_classify_an_onnx_model_matches_eager(
    classifier_onnx: Path, tiny_classifier: Classifier, photo_dir: Path
) -> None:
    """The core decodes, preprocesses and ranks; ONNX Runtime runs the batches: the eager model
    on Pillow's preprocessing is the reference, as for TorchScript."""
    from test_classify import assert_matches_eager

    paths = sorted(photo_dir.iterdir())
    results = tsnative.classify(classifier_onnx, photo_dir, k=3, batch_size=2)
    assert_matches_eager(results, tiny_classifier, paths, k=3)


@needs_onnx
def test_format_follows_the_suffix(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 2).eval()
    x = torch.rand(2, 4)
    with pytest.raises(tsnative.ExportError, match=r"known suffixes are \.pt .*\.onnx"):
        tsnative.export(model, x, tmp_path / "model.bin")
    assert not (tmp_path / "model.bin").exists()
    named = tsnative.export(model, x, tmp_path / "model.bin", format="onnx")
    assert (tmp_path / "model.bin").read_bytes()[:2] != b"PK"  # not a TorchScript zip
    assert "ONNX Runtime" in named.optimization
    assert (tmp_path / "model.pt").exists() is False
    assert tsnative.export(model, x, tmp_path / "model.pt").optimization == "none (as saved)"
    with pytest.raises(ValueError, match="method='script' is TorchScript's"):
        tsnative.export(model, x, tmp_path / "m.onnx", method="script")


@needs_onnx
def test_batch_specialised_into_the_graph_is_an_export_error(tmp_path: Path) -> None:
    """nn.TransformerEncoder exported from a batch of one specialises the batch into a reshape:
    the export's own check at one more row finds it, and the message says what to do."""
    with pytest.raises(tsnative.ExportError, match="give an example of 2 or more rows"):
        tsnative.export(build("transformer"), ZOO["transformer"].cases["b1"](), tmp_path / "t.onnx")
    assert not list(tmp_path.iterdir())  # nothing written, no partial file left


@needs_onnx
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), r"missing argument\(s\) x"),
        ((torch.rand(2, 3, 40, 40), torch.rand(1)), r"takes 1 argument\(s\) but 2 were given"),
        ((torch.rand(2, 3, 40, 40).double(),), "argument 'x' must be float32, got float64"),
        ((torch.rand(3, 40, 40),), "argument 'x' must have 4 dimension"),
        ((torch.rand(2, 4, 40, 40),), "has size 4 in dimension 1, where the model takes 3"),
        ((3,), "argument 'x' must be a Tensor, not int"),
    ],
)
def test_bad_call_names_the_argument(classifier_onnx: Path, args: tuple, message: str) -> None:
    module = tsnative.load(classifier_onnx)
    with pytest.raises(tsnative.ArgumentError, match=message) as caught:
        module(*args)
    assert "tiny.onnx" in str(caught.value) and "forward(Tensor x: float32[" in str(caught.value)


@needs_onnx
def test_what_an_onnx_model_lacks_is_one_clear_error(classifier_onnx: Path) -> None:
    module = tsnative.load(classifier_onnx)
    with pytest.raises(tsnative.InferenceError, match="has no method 'encode'"):
        module.call("encode", torch.rand(1, 3, 40, 40))
    with pytest.raises(AttributeError, match="methods: forward"):
        module.encode  # noqa: B018
    with pytest.raises(tsnative.InferenceError, match="is for TorchScript models"):
        module.named_parameters()
    with pytest.raises(ValueError, match="optimize='fast' is for TorchScript models"):
        tsnative.load(classifier_onnx, optimize="fast")


@needs_onnx
def test_opset_newer_than_onnx_runtime_is_a_load_error(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 99)])
    path = tmp_path / "future.onnx"
    onnx.save(model, str(path))
    with pytest.raises(tsnative.ModelLoadError, match=r"future\.onnx.*lacks the opset"):
        tsnative.load(path)


# ir_version 8, then producer_name "pytorch": how an ONNX file starts, all the core looks at.
ONNX_HEADER = b"\x08\x08\x12\x07pytorch"


def test_ts_infer_sends_onnx_models_to_the_python_api(tmp_path: Path, ts_infer: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(ONNX_HEADER)
    code, _, err = run_cli(ts_infer, path, "--shape", "1", "3", "40", "40")
    assert code == 2  # a usage error: the right file, the wrong front end
    assert err.count("\n") == 1 and "m.onnx' is an ONNX model" in err and "tsnative.load" in err


def test_without_onnx_runtime_loading_onnx_names_the_extra(tmp_path: Path) -> None:
    """Runs whether or not onnxruntime is installed: it is hidden from a fresh interpreter."""
    path = tmp_path / "m.onnx"
    path.write_bytes(ONNX_HEADER)
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "import tsnative\n"
        "try:\n"
        f"    tsnative.load({os.fspath(path)!r})\n"
        "except tsnative.ModelLoadError as error:\n"
        "    print(error)\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert "is an ONNX model; running it needs ONNX Runtime" in done.stdout
    # What to install, in a form pip can act on from anywhere (tsnative is on no index).
    assert "pip install 'onnxruntime>=1.20' 'onnx>=1.17' 'onnxscript>=0.5'" in done.stdout
