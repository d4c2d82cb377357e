"""Parity: every zoo model x export (script; trace where valid) x input case, run by eager
PyTorch, Python's torch.jit.load, tsnative.infer, tsnative.Module and ts-infer.

The claims, checked with torch 2.13.0 (CPU wheel, make test) and 2.14.1 (CUDA wheel, with
torchvision's ResNet-18 and MobileNetV3 in the zoo: make test-compat):
- tsnative (in-process and ts-infer) vs Python torch.jit.load of the same file, under no_grad:
  bit-identical (torch.equal). Same LibTorch, same graph, same kernels: anything else is a bug.
- tsnative vs eager: within helpers.TOLERANCES. In fact bit-identical for every model except
  the traced TransformerEncoder (1.5e-7 of the output's scale: the trace holds the slow-path
  ops while eager under no_grad uses the fused fast path).
- top-5 indices identical everywhere (the recipe's sanity check: scripted vs eager).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import tsnative
from helpers import assert_outputs_equal, eager_topk, is_logits, needs_torchvision, run_cli
from models import ZOO, MyModule, SavedModels, SmallCNN, export, parity_params

PARAMS = [pytest.param(*p, id="-".join(p)) for p in parity_params()]
LOGITS_PARAMS = [pytest.param(*p, id="-".join(p)) for p in parity_params(logits_only=True)]
MODEL_EXPORT_CASE = ("name", "how", "case")


@pytest.mark.parametrize(MODEL_EXPORT_CASE, PARAMS)
def test_infer(saved_models: SavedModels, name: str, how: str, case: str) -> None:
    path = saved_models.path(name, how)
    actual = tsnative.infer(path, *saved_models.inputs(name, case))
    assert_outputs_equal(actual, saved_models.torchscript_output(name, how, case), exact=True)
    assert_outputs_equal(actual, saved_models.eager_output(name, case), exact=False)


@pytest.mark.parametrize(MODEL_EXPORT_CASE, PARAMS)
def test_module(saved_models: SavedModels, name: str, how: str, case: str) -> None:
    module = tsnative.load(saved_models.path(name, how))
    inputs = saved_models.inputs(name, case)
    first, second = module(*inputs), module(*inputs)
    expected = saved_models.torchscript_output(name, how, case)
    # The second call runs the profiled, optimized graph: it must not change the numbers.
    assert_outputs_equal(first, expected, exact=True)
    assert_outputs_equal(second, expected, exact=True)
    assert_outputs_equal(first, saved_models.eager_output(name, case), exact=False)


@pytest.mark.parametrize(MODEL_EXPORT_CASE, LOGITS_PARAMS)
def test_module_topk(saved_models: SavedModels, name: str, how: str, case: str) -> None:
    expected = saved_models.eager_output(name, case)
    # k unset: 5, or every class of a model with fewer (as eager_topk clamps).
    probabilities, indices = tsnative.load(saved_models.path(name, how)).topk(
        *saved_models.inputs(name, case)
    )
    expected_probabilities, expected_indices = eager_topk(expected, 5)
    assert torch.equal(indices, expected_indices)
    assert_outputs_equal(probabilities, expected_probabilities, exact=False)


@pytest.mark.parametrize(MODEL_EXPORT_CASE, PARAMS)
def test_cli(
    saved_models: SavedModels, ts_infer: Path, tmp_path: Path, name: str, how: str, case: str
) -> None:
    """ts-infer --input (one file per argument) --save-output --json, in a fresh process."""
    args: list[str | Path] = []
    for i, value in enumerate(saved_models.inputs(name, case)):
        torch.save(value, tmp_path / f"input{i}.pt")
        args += ["--input", tmp_path / f"input{i}.pt"]
    out = tmp_path / "out.pt"
    code, stdout, stderr = run_cli(
        ts_infer, saved_models.path(name, how), *args, "--save-output", out, "--json"
    )
    assert (code, stderr) == (0, "")
    report = json.loads(stdout)

    # weights_only=False: saved dicts and lists carry globals that the default torch.load refuses
    # (see test_cli.py::test_saved_output_loads_with_default_torch_load). Our own file.
    actual = torch.load(out, weights_only=False)
    assert_outputs_equal(actual, saved_models.torchscript_output(name, how, case), exact=True)
    expected = saved_models.eager_output(name, case)
    assert_outputs_equal(actual, expected, exact=False)

    assert is_logits(expected) == ZOO[name].logits
    if ZOO[name].logits:
        expected_probabilities, expected_indices = eager_topk(expected, 5)
        rows = expected_indices.reshape(-1, expected_indices.shape[-1])
        assert report["indices"] == rows.tolist()
        probabilities = torch.tensor(report["probabilities"], dtype=torch.float64)
        assert_outputs_equal(
            probabilities.to(expected.dtype),
            expected_probabilities.reshape(rows.shape),
            exact=False,
        )
    else:
        assert "indices" not in report


@needs_torchvision
def test_torchvision_classifiers_are_in_the_parity_zoo() -> None:
    """Where torchvision imports, the tutorial recipe's own models run through every parity
    test above (infer, Module, topk, ts-infer; scripted and traced) and the optimize tests."""
    assert {"torchvision_resnet18", "torchvision_mobilenet_v3_small"} <= set(ZOO)


def test_recipe_sanity_check(saved_models: SavedModels) -> None:
    """The tutorial recipe: scripted ResNet-18 on ones(1, 3, 224, 224) gives eager's top-5."""
    x = torch.ones(1, 3, 224, 224)
    with torch.no_grad():
        eager = saved_models.eager("resnet18")(x)
        scripted = torch.jit.load(str(saved_models.path("resnet18"))).eval()(x)
    expected = eager_topk(eager, 5)[1]
    assert torch.equal(eager_topk(scripted, 5)[1], expected)
    assert torch.equal(tsnative.load(saved_models.path("resnet18")).topk(x, k=5)[1], expected)


@pytest.mark.parametrize(
    ("x", "branch"),
    [
        pytest.param(torch.tensor([1.0, 2.0, 0.5, 0.25]), "mv", id="sum>0"),
        pytest.param(torch.tensor([-1.0, -2.0, 0.5, 0.25]), "add", id="sum<=0"),
    ],
)
def test_scripted_my_module_takes_both_branches(
    saved_models: SavedModels, x: torch.Tensor, branch: str
) -> None:
    weight = saved_models.eager("my_module").weight.detach()
    expected = weight.mv(x) if branch == "mv" else weight + x  # by hand, not by forward()
    assert_outputs_equal(tsnative.infer(saved_models.path("my_module"), x), expected, exact=False)


def test_tracing_my_module_freezes_the_branch(tmp_path: Path) -> None:
    """Why MyModule is script-only: a trace keeps the branch its example input took."""
    model = MyModule(3, 4).eval()
    positive, negative = torch.ones(4), -torch.ones(4)
    path = tmp_path / "traced.pt"
    torch.jit.save(export(model, "trace", (positive,)), str(path))
    traced = tsnative.infer(path, negative)
    assert traced.shape == (3,)  # still weight.mv(x)
    with torch.no_grad():
        assert model(negative).shape == (3, 4)


def test_model_saved_in_training_mode_runs_in_eval_mode(tmp_path: Path) -> None:
    """tsnative puts the model in eval mode: Dropout off, BatchNorm on running statistics,
    so outputs are deterministic and equal eager eval even for a file saved in train mode."""
    torch.manual_seed(0)
    model = SmallCNN()
    path = tmp_path / "train-mode.pt"
    torch.jit.save(torch.jit.script(model.train()), str(path))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        eval_output = model.eval()(x)
        train_output = torch.jit.load(str(path))(x)  # Python's load keeps training mode
    assert not torch.allclose(train_output, eval_output)
    module = tsnative.load(path)
    assert_outputs_equal(module(x), eval_output, exact=False)
    assert_outputs_equal(module(x), module(x), exact=True)


def test_returned_tensors_are_ordinary(saved_models: SavedModels) -> None:
    """Autograd is off (no grad history even for inputs that require grad), yet the result is
    a normal tensor: not an inference tensor, so in-place ops work outside the core."""
    x = SavedModels.inputs("cnn_bn_dropout", "b1")[0].requires_grad_()
    y = tsnative.infer(saved_models.path("cnn_bn_dropout"), x)
    assert not y.requires_grad
    assert y.grad_fn is None
    assert not y.is_inference()
    expected = saved_models.eager_output("cnn_bn_dropout", "b1")
    y.add_(1)
    assert_outputs_equal(y, expected + 1, exact=False)


def test_output_aliasing_an_input_does_not_require_grad(saved_models: SavedModels) -> None:
    x = torch.randn(3, requires_grad=True)
    y = tsnative.infer(saved_models.path("identity"), x)
    assert y.data_ptr() == x.data_ptr()  # still zero-copy
    assert not y.requires_grad
