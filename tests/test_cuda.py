"""tsnative on a CUDA device, against eager PyTorch on the same device: a module and its
optimized variant, classify, ts-infer --device cuda, and an AOTInductor package compiled for
CUDA. Skipped, with the reason, where torch sees no GPU (CI's machines); they run wherever one
is, e.g. on a lent GPU machine: `python -m pytest -m needs_cuda`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import tsnative
from conftest import Classifier
from helpers import (
    CROSS_DEVICE_TOLERANCES,
    PILLOW_PROBABILITY_ATOL,
    assert_outputs_equal,
    pillow_preprocess,
    run_cli,
    to_cpu,
)
from models import ZOO, SavedModels

pytestmark = [
    pytest.mark.needs_cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _on_cuda(value):
    return torch.utils._pytree.tree_map(
        lambda v: v.cuda() if isinstance(v, torch.Tensor) else v, value
    )


def _eager_on_cuda(saved_models: SavedModels, name: str, inputs):
    model = saved_models.eager(name).cuda()
    try:
        with torch.no_grad():
            return to_cpu(model(*_on_cuda(inputs)))
    finally:
        model.cpu()  # the shared eager model stays where the other tests expect it


@pytest.mark.parametrize("name", ["cnn_bn_dropout", "lstm", "dict_out", "resnet18"])
@pytest.mark.parametrize("optimize", ["none", "exact"])
def test_a_module_on_cuda_matches_eager_on_cuda(
    saved_models: SavedModels, name: str, optimize: str
) -> None:
    """CPU inputs are moved to the device; outputs stay there."""
    inputs = SavedModels.inputs(name, list(ZOO[name].cases)[-1])
    module = tsnative.load(saved_models.path(name), device="cuda", optimize=optimize)
    assert module.device.type == "cuda"
    actual = module(*inputs)
    assert all(t.is_cuda for t in torch.utils._pytree.tree_leaves(actual))
    expected = _eager_on_cuda(saved_models, name, inputs)
    assert_outputs_equal(to_cpu(actual), expected, exact=False, tolerances=CROSS_DEVICE_TOLERANCES)


def test_classify_on_cuda_matches_eager_on_cuda(
    tiny_classifier: Classifier, photo_dir: Path
) -> None:
    paths = sorted(photo_dir.iterdir())
    results = tsnative.classify(tsnative.load(tiny_classifier.path, device="cuda"), paths, k=3)
    batch = torch.stack([pillow_preprocess(p, **tiny_classifier.preprocess) for p in paths])
    model = tiny_classifier.eager.cuda()
    try:
        with torch.no_grad():
            probabilities, indices = torch.softmax(model(batch.cuda()), -1).topk(3)
    finally:
        model.cpu()
    for result, row_p, row_i in zip(results, probabilities.cpu(), indices.cpu(), strict=True):
        assert [p.index for p in result.predictions] == row_i.tolist(), result.path
        got = torch.tensor([p.probability for p in result.predictions], dtype=torch.float64)
        assert float((got - row_p.double()).abs().max()) <= PILLOW_PROBABILITY_ATOL


def test_ts_infer_on_cuda_matches_eager_on_cuda(
    saved_models: SavedModels, ts_infer: Path, tmp_path: Path
) -> None:
    (x,) = SavedModels.inputs("cnn_bn_dropout", "b4")
    torch.save(x, tmp_path / "x.pt")
    out = tmp_path / "out.pt"
    code, _, stderr = run_cli(
        ts_infer,
        saved_models.path("cnn_bn_dropout"),
        "--device",
        "cuda",
        "--input",
        tmp_path / "x.pt",
        "--save-output",
        out,
        "--json",
    )
    assert (code, stderr) == (0, "")
    expected = _eager_on_cuda(saved_models, "cnn_bn_dropout", (x,))
    saved = torch.load(out)
    assert saved.is_cuda or saved.device.type == "cpu"
    assert_outputs_equal(saved.cpu(), expected, exact=False, tolerances=CROSS_DEVICE_TOLERANCES)


def test_a_package_compiled_for_cuda_matches_eager_on_cuda(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4)
    )
    x = torch.rand(2, 3, 16, 16)
    model(x)  # materialise the lazy layer
    model = model.eval().cuda()
    path = tmp_path / "m.pt2"
    tsnative.export(model, x.cuda(), path, progress=False)
    module = tsnative.load(path, device="cuda")
    with torch.no_grad():
        expected = model(x.cuda()).cpu()
    assert_outputs_equal(
        module(x.cuda()).cpu(), expected, exact=False, tolerances=CROSS_DEVICE_TOLERANCES
    )
    with pytest.raises(tsnative.ModelLoadError, match="compiled for cuda, not cpu"):
        tsnative.load(path)
