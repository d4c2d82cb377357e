"""The Python API: tsnative.Module, infer and its cache, zero-copy, threads, settings."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import tsnative
from helpers import assert_outputs_equal, eager_topk
from models import Doubler, SavedModels, build
from torch import nn


@pytest.fixture
def exports_model(saved_models: SavedModels) -> tsnative.Module:
    """A fresh Module of the model with @torch.jit.export methods (tests may change its state)."""
    return tsnative.load(saved_models.path("with_exports"))


def test_call_forward_and_call_by_name_agree_with_eager(
    saved_models: SavedModels, exports_model: tsnative.Module
) -> None:
    (x,) = SavedModels.inputs("with_exports", "b4")
    expected = saved_models.eager_output("with_exports", "b4")
    for output in (exports_model(x), exports_model.forward(x), exports_model.call("forward", x)):
        assert_outputs_equal(output, expected, exact=False)


def test_exported_methods_by_name_and_by_attribute(
    saved_models: SavedModels, exports_model: tsnative.Module
) -> None:
    (x,) = SavedModels.inputs("with_exports", "b4")
    with torch.no_grad():
        expected = saved_models.eager("with_exports").encode(x)
    assert_outputs_equal(exports_model.call("encode", x), expected, exact=False)
    assert_outputs_equal(exports_model.encode(x), expected, exact=False)


def test_method_changing_module_state(exports_model: tsnative.Module) -> None:
    eager = build("with_exports")
    assert_outputs_equal(exports_model.get_memory(), eager.memory, exact=True)
    assert exports_model.reset_states() is None
    eager.reset_states()
    assert_outputs_equal(exports_model.get_memory(), torch.zeros(5), exact=True)
    (x,) = SavedModels.inputs("with_exports", "b1")
    with torch.no_grad():
        assert_outputs_equal(exports_model(x), eager(x), exact=False)


def test_methods_signature_and_attributes(exports_model: tsnative.Module) -> None:
    assert exports_model.methods == ["encode", "forward", "get_memory", "reset_states"]
    assert exports_model.signature() == "forward(Tensor x) -> Tensor"
    assert exports_model.signature("encode") == "encode(Tensor x) -> Tensor"
    assert exports_model.signature("reset_states") == "reset_states() -> NoneType"
    assert {"encode", "reset_states", "topk"} <= set(dir(exports_model))
    assert exports_model.device == torch.device("cpu")
    assert exports_model.path.endswith("with_exports-script.pt")
    assert repr(exports_model).startswith("tsnative.Module(")
    with pytest.raises(AttributeError, match=r"no attribute or method 'decode' \(methods: encode"):
        _ = exports_model.decode
    with pytest.raises(AttributeError):
        _ = exports_model._private


def test_signature_of_typed_arguments(saved_models: SavedModels) -> None:
    module = tsnative.load(saved_models.path("scalar_args"))
    assert module.signature() == (
        "forward(Tensor x, int repeat, float scale, str mode, bool flag, Tensor? bias) -> Tensor"
    )


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda m, x, b: m(x, 2, 0.5, "sum", True, b), id="positional"),
        pytest.param(
            lambda m, x, b: m(x, repeat=2, scale=0.5, mode="sum", flag=True, bias=b), id="kwargs"
        ),
        pytest.param(lambda m, x, b: m(x, 2, 0.5, flag=True, bias=b, mode="sum"), id="mixed"),
        pytest.param(lambda m, x, b: m.call("forward", x, 2, 0.5, "sum", True, bias=b), id="call"),
    ],
)
@pytest.mark.parametrize("bias", [None, torch.full((4,), 0.25)], ids=["none", "tensor"])
def test_scalar_arguments_positional_and_by_name(
    saved_models: SavedModels, call: Callable[..., torch.Tensor], bias: torch.Tensor | None
) -> None:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = saved_models.eager("scalar_args")(x, 2, 0.5, "sum", True, bias)
    module = tsnative.load(saved_models.path("scalar_args"))
    assert_outputs_equal(call(module, x, bias), expected, exact=False)


def test_int_where_float_expected_is_accepted(saved_models: SavedModels) -> None:
    """TorchScript's own conversion rules: an int passes as a float, as in Python."""
    x = torch.randn(2, 4)
    with torch.no_grad():
        expected = saved_models.eager("scalar_args")(x, 1, 2.0, "mean", False, None)
    actual = tsnative.load(saved_models.path("scalar_args"))(x, 1, 2, "mean", False, None)
    assert_outputs_equal(actual, expected, exact=False)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_topk_matches_eager_softmax_topk(saved_models: SavedModels, k: int) -> None:
    (x,) = SavedModels.inputs("cnn_bn_dropout", "b4")
    probabilities, indices = tsnative.load(saved_models.path("cnn_bn_dropout")).topk(x, k=k)
    expected_probabilities, expected_indices = eager_topk(
        saved_models.eager_output("cnn_bn_dropout", "b4"), k
    )
    assert indices.shape == (4, k)
    assert torch.equal(indices, expected_indices)
    assert_outputs_equal(probabilities, expected_probabilities, exact=False)


def test_topk_default_k_is_5_and_more_than_the_classes_is_an_error(
    saved_models: SavedModels,
) -> None:
    module = tsnative.load(saved_models.path("cnn_bn_dropout"))  # 10 classes
    (x,) = SavedModels.inputs("cnn_bn_dropout", "b1")
    assert module.topk(x)[1].shape == (1, 5)
    probabilities, indices = module.topk(x, k=10)
    assert sorted(indices[0].tolist()) == list(range(10))
    assert probabilities.sum().item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"^top-k of 100 classes, but the output has 10 "):
        module.topk(x, k=100)


def test_topk_rejects_k_0(saved_models: SavedModels) -> None:
    module = tsnative.load(saved_models.path("cnn_bn_dropout"))
    with pytest.raises(ValueError, match=r"k >= 1, got 0"):
        module.topk(torch.zeros(1, 3, 8, 8), k=0)


def test_topk_of_non_tensor_output(saved_models: SavedModels) -> None:
    module = tsnative.load(saved_models.path("dict_out"))
    with pytest.raises(tsnative.InferenceError, match=r"needs the model to return a tensor.*Dict"):
        module.topk(torch.zeros(1, 5))


# --- infer and its cache ----------------------------------------------------------------------


@pytest.fixture
def empty_cache() -> Iterator[None]:
    tsnative.clear_cache()
    yield
    tsnative.clear_cache()


def _save(module: nn.Module, path: Path) -> None:
    torch.jit.save(torch.jit.script(module), str(path))


class Tripler(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 3


@pytest.mark.usefixtures("empty_cache")
def test_infer_reuses_the_loaded_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "doubler.pt"
    _save(Doubler(), path)
    x = torch.arange(4.0)
    assert_outputs_equal(tsnative.infer(path, x), x * 2, exact=True)
    (key,) = tsnative.module._cache
    stat = path.stat()
    assert key == (stat.st_dev, stat.st_ino, "cpu", "none")
    first = tsnative.module._cache[key][1]
    # The same file reached by other spellings of its path is the same cache entry.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.pt").symlink_to(path)
    assert_outputs_equal(tsnative.infer("doubler.pt", x), x * 2, exact=True)
    assert_outputs_equal(tsnative.infer("link.pt", x), x * 2, exact=True)
    assert list(tsnative.module._cache) == [key]
    assert tsnative.module._cache[key][1] is first


@pytest.mark.usefixtures("empty_cache")
def test_infer_reloads_a_rewritten_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    _save(Doubler(), path)
    x = torch.arange(4.0)
    assert_outputs_equal(tsnative.infer(path, x), x * 2, exact=True)
    first = next(iter(tsnative.module._cache.values()))[1]
    before = path.stat().st_mtime_ns
    _save(Tripler(), path)
    # Force a different mtime: a coarse-grained filesystem clock could otherwise repeat it
    # (and the two archives may have the same size).
    os.utime(path, ns=(before + 10**9, before + 10**9))
    assert_outputs_equal(tsnative.infer(path, x), x * 3, exact=True)
    assert next(iter(tsnative.module._cache.values()))[1] is not first
    assert len(tsnative.module._cache) == 1


@pytest.mark.usefixtures("empty_cache")
def test_clear_cache(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    _save(Doubler(), path)
    tsnative.infer(path, torch.ones(1))
    assert len(tsnative.module._cache) == 1
    tsnative.clear_cache()
    assert len(tsnative.module._cache) == 0


@pytest.mark.usefixtures("empty_cache")
def test_infer_keeps_the_16_most_recent_models(tmp_path: Path) -> None:
    paths = []
    for number in range(18):
        path = tmp_path / f"m{number}.pt"
        _save(Doubler() if number % 2 else Tripler(), path)
        paths.append(path)
    x = torch.arange(3.0)
    for number, path in enumerate(paths):
        assert_outputs_equal(tsnative.infer(path, x), x * (2 if number % 2 else 3), exact=True)
    kept = {key[1] for key in tsnative.module._cache}
    assert len(kept) == tsnative.module._CACHE_SIZE == 16
    assert kept == {path.stat().st_ino for path in paths[2:]}  # the two oldest evicted
    tsnative.infer(paths[5], x)  # used again: now the newest, the next to go is paths[2]
    tsnative.infer(paths[0], x)
    assert paths[2].stat().st_ino not in {key[1] for key in tsnative.module._cache}
    assert paths[5].stat().st_ino in {key[1] for key in tsnative.module._cache}


@pytest.mark.usefixtures("empty_cache")
def test_infer_from_many_threads_shares_the_cache(tmp_path: Path) -> None:
    """8 threads calling infer on 3 files at once: each answer right, one entry per file."""
    paths = [tmp_path / f"m{number}.pt" for number in range(3)]
    for number, path in enumerate(paths):
        _save(Doubler() if number != 1 else Tripler(), path)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for call in range(30):
                number = (seed + call) % 3
                x = torch.full((4,), float(seed))
                expected = x * (3 if number == 1 else 2)
                assert torch.equal(tsnative.infer(paths[number], x), expected)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(tsnative.module._cache) == 3


# --- tensors, threads, settings ---------------------------------------------------------------


def test_tensors_cross_without_copies(saved_models: SavedModels) -> None:
    x = torch.randn(16, 16)
    y = tsnative.infer(saved_models.path("identity"), x)
    assert y.data_ptr() == x.data_ptr()
    x[0, 0] = 42.0
    assert y[0, 0].item() == 42.0


def test_many_threads_share_one_module(saved_models: SavedModels) -> None:
    """8 threads x 20 calls at once on one Module (the GIL is released while it runs)."""
    module = tsnative.load(saved_models.path("cnn_bn_dropout"))
    inputs = [
        torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(8)
    ]
    eager = saved_models.eager("cnn_bn_dropout")
    with torch.no_grad():
        expected = [eager(x) for x in inputs]
    sequential = [module(x) for x in inputs]
    results: dict[int, list[torch.Tensor]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = [module(inputs[i]) for _ in range(20)]
        except BaseException as error:  # re-raised in the main thread below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(results) == list(range(8))
    for i in range(8):
        assert_outputs_equal(sequential[i], expected[i], exact=False)
        for output in results[i]:
            assert_outputs_equal(output, sequential[i], exact=True)


@pytest.fixture
def restore_num_threads() -> Iterator[int]:
    before = tsnative.get_num_threads()
    yield before
    tsnative.set_num_threads(before)


def test_set_num_threads_is_process_wide(restore_num_threads: int) -> None:
    assert tsnative.get_num_threads() == torch.get_num_threads()
    tsnative.set_num_threads(1)
    assert tsnative.get_num_threads() == 1
    assert torch.get_num_threads() == 1  # the same LibTorch as the torch beside it
    tsnative.set_num_threads(restore_num_threads + 1)
    assert tsnative.get_num_threads() == restore_num_threads + 1


def test_set_num_threads_rejects_0(restore_num_threads: int) -> None:
    with pytest.raises(ValueError, match=r"thread count must be at least 1, got 0"):
        tsnative.set_num_threads(0)
    assert tsnative.get_num_threads() == restore_num_threads


def test_version_is_the_package_version() -> None:
    assert tsnative.__version__ == importlib.metadata.version("tsnative")


def test_built_against_the_running_torch() -> None:
    """The build records the torch it compiled against, and the distribution asks for a range
    (a pin would make pip replace the user's torch)."""
    from tsnative import _build_info

    assert torch.__version__ == _build_info.TORCH_VERSION
    requirements = importlib.metadata.requires("tsnative") or []
    # torch itself, not the extras' packages named after it (torchao)
    named_torch = [r for r in requirements if re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0] == "torch"]
    assert named_torch == ["torch>=2.13"]


def test_import_refuses_another_torch_and_says_how_to_rebuild() -> None:
    """Run in a fresh interpreter whose torch claims another version."""
    code = "import torch; torch.__version__ = '2.99.0'; import tsnative"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: tsnative was compiled against torch ")
    assert "but torch 2.99.0 is installed" in last_line
    assert "pip install --no-build-isolation --no-deps --force-reinstall ." in last_line


def test_cuda_available_agrees_with_torch() -> None:
    assert tsnative.cuda_available() == torch.cuda.is_available()


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (tsnative.ArgumentError, (tsnative.InferenceError, TypeError)),
        (tsnative.InferenceError, (RuntimeError,)),
        (tsnative.ModelLoadError, (RuntimeError,)),
        (tsnative.InputError, (ValueError,)),
    ],
)
def test_exception_hierarchy(error: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    assert all(issubclass(error, base) for base in bases)
    assert error.__module__ == "tsnative"


def test_public_names() -> None:
    for name in tsnative.__all__:
        assert hasattr(tsnative, name), name
