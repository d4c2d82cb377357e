"""Optimize levels: "exact" stays within float32 rounding of eager, "bf16" (and "fast", where
it runs bfloat16) keeps the top-5, and every fallback (a CPU without bfloat16, a model that
cannot be frozen) is said, not hidden. The bfloat16 variants run on every CPU through "bf16";
what "fast" picks is asserted from the CPU's capability as the kernel reports it."""

from __future__ import annotations

import contextlib
import json
import platform
import re
from pathlib import Path

import pytest
import torch
import tsnative
from helpers import (
    BF16_TOLERANCES,
    OPTIMIZED_TOLERANCES,
    assert_outputs_equal,
    eager_topk,
    is_logits,
    max_abs_diff,
    run_cli,
)
from models import ZOO, SavedModels

LEVELS = ("exact", "fast", "bf16")


def _kernel_cpu_flags() -> set[str]:
    """The CPU flags Linux reports: the reference for what LibTorch's cpuinfo detects."""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


NATIVE_BF16 = tsnative.cpu_has_native_bf16()


def _first_case(name: str) -> str:
    return next(iter(ZOO[name].cases))


def _load(saved_models: SavedModels, name: str, level: str, inputs: tuple) -> tsnative.Module:
    return tsnative.load(saved_models.path(name), optimize=level, warmup_inputs=inputs)


@pytest.mark.parametrize("name", list(ZOO))
def test_exact_matches_eager(saved_models: SavedModels, name: str) -> None:
    case = _first_case(name)
    inputs = saved_models.inputs(name, case)
    module = _load(saved_models, name, "exact", inputs)
    expected = saved_models.eager_output(name, case)
    assert_outputs_equal(module(*inputs), expected, exact=False, tolerances=OPTIMIZED_TOLERANCES)
    # A variant that failed (oneDNN Graph cannot fuse every model) is one line of the report:
    # its cause, not the graph dump LibTorch appends (escaped, a newline would read \x0a).
    assert "\n" not in module.optimization
    assert "\\x0a" not in module.optimization


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"),
    reason="/proc/cpuinfo flags are read on Linux x86-64 only",
)
def test_native_bf16_is_what_the_kernel_reports() -> None:
    flags = _kernel_cpu_flags()
    assert bool(flags & {"avx512_bf16", "amx_bf16"}) == NATIVE_BF16, sorted(flags)


@pytest.mark.parametrize("name", [name for name, spec in ZOO.items() if spec.logits])
def test_bf16_keeps_the_top5(
    saved_models: SavedModels, name: str, record_property: pytest.RecordProperty
) -> None:
    """bf16 runs bfloat16 on any CPU (emulated where it is not native): the numerics fast has
    on a CPU with native bfloat16, checked on every CPU."""
    case = _first_case(name)
    inputs = saved_models.inputs(name, case)
    expected = saved_models.eager_output(name, case)
    assert is_logits(expected)
    module = _load(saved_models, name, "bf16", inputs)
    actual = module(*inputs)  # without tensor-only inputs to warm up on, this call chooses
    if any(isinstance(x, torch.Tensor) and x.dtype == torch.float64 for x in inputs):
        # Only float32 arguments are cast to bfloat16: a float64 model's bfloat16 variants fail
        # on its float64 input, and the saved model runs instead, as the report says.
        assert module.optimization.startswith("none (as saved)"), module.optimization
        assert "failed on the warm-up input" in module.optimization
    else:
        assert module.optimization.startswith("bf16 (bfloat16, frozen"), module.optimization
    assert actual.dtype == expected.dtype  # reduced precision stays inside the core
    assert torch.equal(eager_topk(actual, 5)[1], eager_topk(expected, 5)[1])
    assert_outputs_equal(actual, expected, exact=False, tolerances=BF16_TOLERANCES)
    error = max_abs_diff(actual, expected)
    record_property("max_abs_error", error)
    record_property("max_rel_error", error / expected.abs().max().item())


@pytest.mark.parametrize("how", ["script", "trace"])
def test_bf16_keeps_index_tensors_integral(saved_models: SavedModels, how: str) -> None:
    """A Hugging Face-shaped encoder: its int64 index buffers stay int64 in the bfloat16
    variants (gather and embedding need them so), and the float32 dtype a trace records
    becomes bfloat16 there; both variants used to fail on the warm-up input."""
    inputs = saved_models.inputs("token_classifier", "b4")
    expected = saved_models.eager_output("token_classifier", "b4")
    path = saved_models.path("token_classifier", how)
    for level in ("bf16", "fast") if NATIVE_BF16 else ("bf16",):
        module = tsnative.load(path, optimize=level, warmup_inputs=inputs)
        assert "failed" not in module.optimization, module.optimization
        assert f"{level} (bfloat16, frozen" in module.optimization, module.optimization
        if level == "bf16":
            actual = module(*inputs)
            assert torch.equal(actual.argmax(1), expected.argmax(1))
            assert_outputs_equal(actual, expected, exact=False, tolerances=BF16_TOLERANCES)


class ZeroContext(torch.nn.Module):
    """silero-vad's pattern: a tensor made at the default dtype meets the input."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = torch.zeros(x.shape[0], 4)
        return self.linear(torch.cat([context, x], dim=1))


def test_bf16_makes_default_dtype_tensors_in_bfloat16(tmp_path: Path) -> None:
    """torch.zeros(...) without a dtype is float32 in the saved model, so in a bfloat16 variant
    it is bfloat16 too; it used to meet the bfloat16 weights as float32 and fail."""
    torch.manual_seed(0)
    model = ZeroContext().eval()
    path = tmp_path / "zero_context.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    x = torch.randn(2, 6)
    module = tsnative.load(path, optimize="bf16", warmup_inputs=(x,))
    assert module.optimization.startswith("bf16 (bfloat16, frozen"), module.optimization
    with torch.no_grad():
        assert_outputs_equal(module(x), model(x), exact=False, tolerances=BF16_TOLERANCES)


def test_fast_picks_bf16_by_the_cpu_capability(saved_models: SavedModels) -> None:
    path = saved_models.path("cnn_bn_dropout")
    inputs = saved_models.inputs("cnn_bn_dropout", "b1")
    untimed = tsnative.load(path, optimize="fast")
    pending = untimed.optimization  # the candidates the first call will time
    untimed(*inputs)
    first_call = untimed.optimization
    timed = tsnative.load(path, optimize="fast", warmup_inputs=inputs).optimization
    if NATIVE_BF16:
        assert pending.startswith("fast: the first call of forward times fast (bfloat16"), pending
        for report, how in ((first_call, "the first call"), (timed, "the warm-up input")):
            assert "fast (bfloat16" in report.split(f"[timed on {how}:")[1], report
    else:
        assert pending.startswith("fast: the first call of forward times exact (float32"), pending
        for report in (pending, first_call, timed):
            assert "no native bfloat16" in report and "(bfloat16," not in report, report


@pytest.mark.parametrize("level", LEVELS)
def test_without_warmup_inputs_the_first_call_chooses(
    saved_models: SavedModels, level: str
) -> None:
    """The variants are timed on the first call's arguments (oneDNN Graph fusion among them),
    so a model loaded without warm-up inputs runs as fast as one warmed up in load."""
    inputs = saved_models.inputs("cnn_bn_dropout", "b4")
    expected = saved_models.eager_output("cnn_bn_dropout", "b4")
    module = tsnative.load(saved_models.path("cnn_bn_dropout"), optimize=level)
    assert module.optimization.startswith(f"{level}: the first call of forward times ")
    assert "oneDNN Graph fusion" in module.optimization
    first = module(*inputs)
    report = module.optimization
    assert "[timed on the first call: " in report and "s to choose)" in report, report
    assert not report.startswith(level + ":"), report  # a variant's name now
    # The tolerance of the variant's dtype, whichever the timing kept (the file as saved, in
    # float32, is held to float32's, not to bfloat16's).
    variant = report.split(" [")[0]
    tolerances = BF16_TOLERANCES if "bfloat16" in variant else OPTIMIZED_TOLERANCES
    assert_outputs_equal(first, expected, exact=False, tolerances=tolerances)
    assert torch.equal(module(*inputs), first)
    assert module.optimization == report  # chosen once


def test_exported_methods_survive_freezing(saved_models: SavedModels) -> None:
    inputs = saved_models.inputs("with_exports", "b1")
    module = tsnative.load(saved_models.path("with_exports"), optimize="exact")
    eager = saved_models.eager("with_exports")
    assert module.methods == tsnative.load(saved_models.path("with_exports")).methods
    with torch.no_grad():
        expected = eager.encode(*inputs)
    assert_outputs_equal(
        module.encode(*inputs), expected, exact=False, tolerances=OPTIMIZED_TOLERANCES
    )


def test_warmup_inputs_time_the_variants(saved_models: SavedModels) -> None:
    path = saved_models.path("cnn_bn_dropout")
    inputs = saved_models.inputs("cnn_bn_dropout", "b1")
    timed = tsnative.load(path, optimize="exact", warmup_inputs=inputs).optimization
    assert "timed on the warm-up input" in timed
    assert "exact" in timed and "none (as saved)" in timed  # both candidates were measured
    assert "timed" not in tsnative.load(path, optimize="exact").optimization
    # One candidate is warmed up, not timed against nothing.
    assert tsnative.load(path, warmup_inputs=inputs).optimization == "none (as saved)"


def test_warmup_inputs_take_any_argument_forward_takes(saved_models: SavedModels) -> None:
    """Numbers, strings, bools, None, tuples and lists, as a call passes them: the timed choice
    runs on them (silero-vad's forward takes the sample rate as an int)."""
    inputs = saved_models.inputs("scalar_args", "sum_bias")  # tensor, int, float, str, bool, tensor
    module = tsnative.load(saved_models.path("scalar_args"), optimize="exact", warmup_inputs=inputs)
    assert "timed on the warm-up input" in module.optimization
    expected = saved_models.eager_output("scalar_args", "sum_bias")
    assert_outputs_equal(module(*inputs), expected, exact=False, tolerances=OPTIMIZED_TOLERANCES)
    with_none = saved_models.inputs("scalar_args", "mean_none")
    module = tsnative.load(
        saved_models.path("scalar_args"), optimize="exact", warmup_inputs=with_none
    )
    assert "timed on the warm-up input" in module.optimization


@pytest.mark.parametrize(
    ("value", "named"),
    [(object(), "object"), ([1, "a"], "a list whose elements differ in type"), ({1: 2}, "dict")],
)
def test_warmup_input_that_no_model_takes_is_a_type_error(
    saved_models: SavedModels, value: object, named: str
) -> None:
    path = saved_models.path("cnn_bn_dropout")
    x = saved_models.inputs("cnn_bn_dropout", "b1")[0]
    with pytest.raises(TypeError, match=rf"warmup_inputs\[1\] cannot be a model argument: {named}"):
        tsnative.load(path, optimize="exact", warmup_inputs=(x, value))


def test_exported_image_model_warms_up_by_itself(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3)
    )
    model(torch.rand(1, 3, 16, 16))  # materialise the lazy layer
    path = tmp_path / "image_model.pt"
    tsnative.export(model, torch.rand(1, 3, 16, 16), path, preprocess={"resize": 16, "crop": 16})
    assert "timed on the warm-up input" in tsnative.load(path, optimize="exact").optimization


def test_bad_level_is_a_value_error(saved_models: SavedModels) -> None:
    with pytest.raises(ValueError, match=r"unknown optimize level 'turbo'.*'fast' or 'bf16'"):
        tsnative.load(saved_models.path("doubler"), optimize="turbo")


def test_infer_caches_each_level_apart(saved_models: SavedModels) -> None:
    tsnative.clear_cache()
    path = saved_models.path("cnn_bn_dropout")
    inputs = saved_models.inputs("cnn_bn_dropout", "b1")
    tsnative.infer(path, *inputs)
    tsnative.infer(path, *inputs, optimize="exact")
    levels = sorted(key[3] for key in tsnative.module._cache)
    assert levels == ["exact", "none"]


def test_interop_threads_can_only_be_set_once() -> None:
    # The first call fails too if an earlier test already started inter-op work.
    with contextlib.suppress(ValueError):
        tsnative.set_num_interop_threads(1)
    with pytest.raises(ValueError, match=r"only be set once"):
        tsnative.set_num_interop_threads(1)


@pytest.mark.parametrize("level", LEVELS)
def test_cli_optimize_and_repeat(
    saved_models: SavedModels, ts_infer: Path, level: str, tmp_path: Path
) -> None:
    code, stdout, stderr = run_cli(
        ts_infer,
        saved_models.path("resnet18"),
        "--ones",
        "--optimize",
        level,
        "--repeat",
        "3",
        "--json",
        "--save-output",
        tmp_path / "logits.pt",
        timeout=600,  # bf16 on a CPU without it: ResNet-18's variants timed, emulated
    )
    assert (code, stderr) == (0, "")
    report = json.loads(stdout)
    chosen = report["optimization"].split(" ")[0]
    if level == "bf16":
        assert report["optimization"].startswith("bf16 (bfloat16"), report["optimization"]
    elif level == "fast" and NATIVE_BF16:
        assert "fast (bfloat16" in report["optimization"]  # timed, if not chosen
        assert chosen in ("fast", "exact", "none")
    else:
        assert chosen in ("exact", "none")
        assert "(bfloat16," not in report["optimization"]
    assert report["repeat"] == 3
    assert 0 < report["forward_ms"] <= report["forward_p90_ms"]
    assert report["first_forward_ms"] > 0
    with torch.no_grad():
        logits = saved_models.eager("resnet18")(torch.ones(1, 3, 224, 224))
    expected_probabilities, expected_indices = eager_topk(logits, 5)
    saved = torch.load(tmp_path / "logits.pt")
    if chosen in ("exact", "none"):  # float32
        assert report["indices"] == expected_indices.tolist()
        assert_outputs_equal(saved, logits, exact=False, tolerances=OPTIMIZED_TOLERANCES)
    else:
        # bfloat16 may swap classes whose eager probabilities nearly tie (a random-weight
        # ResNet on --ones: all near 1/1000, neighbours ~1% apart): the best class holds, every
        # class shown has an eager probability within 2% of eager's fifth, and the logits
        # themselves (all 1,000) are eager's within bfloat16's tolerance, which a wrong
        # bfloat16 output would not meet.
        eager = torch.softmax(logits, -1)[0]
        assert report["indices"][0][0] == expected_indices[0][0].item()
        floor = 0.98 * expected_probabilities[0][4].item()
        assert all(eager[index].item() >= floor for index in report["indices"][0]), report
        assert_outputs_equal(saved.float(), logits, exact=False, tolerances=BF16_TOLERANCES)


@pytest.mark.parametrize(
    ("args", "match"),
    [(["--optimize", "turbo"], r"--optimize"), (["--repeat", "0"], r"--repeat")],
    ids=["bad_level", "repeat_0"],
)
def test_cli_optimize_usage_errors(
    saved_models: SavedModels, ts_infer: Path, args: list[str], match: str
) -> None:
    code, _, stderr = run_cli(ts_infer, saved_models.path("doubler"), *args)
    assert code == 2
    assert len(stderr.splitlines()) == 1
    assert re.search(match, stderr), stderr
