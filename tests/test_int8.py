"""export(quantize="int8"): the digits classifier make demo trains, on scikit-learn's real
handwritten digits, quantized with calibration and compiled into oneDNN's int8 kernels; its
held-out accuracy against the float model's, the report export gives, and what it refuses."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
import tsnative
from torch import nn

pytest.importorskip("torchao", reason="the int8 extra (torchao) is not installed")
from demo import LABELS, preprocess, to_pixels, train
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


class Digits:
    def __init__(self) -> None:
        digits = load_digits()
        train_x, test_x, train_y, test_y = train_test_split(
            to_pixels(digits.data),
            digits.target,
            test_size=0.2,
            random_state=0,
            stratify=digits.target,
        )
        self.train_x, self.train_y = preprocess(train_x), torch.from_numpy(train_y)
        self.test_x, self.test_y = preprocess(test_x), torch.from_numpy(test_y)
        self.model = train(self.train_x, self.train_y)
        # Calibration: 8 batches of 32 training digits (never the held-out ones).
        self.calibration = list(self.train_x[:256].split(32))


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits()


@pytest.fixture(scope="module")
def int8_digits(digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> tsnative.Module:
    path = tmp_path_factory.mktemp("int8") / "digits-int8.pt2"
    return tsnative.export(
        digits.model,
        digits.calibration[0],
        path,
        labels=LABELS,
        quantize="int8",
        calibration=digits.calibration,
        check_inputs=[digits.test_x[:32]],
        progress=False,
    )


def test_int8_keeps_the_held_out_accuracy_of_the_float_model(
    digits: Digits, int8_digits: tsnative.Module
) -> None:
    # The package runs batches of 32 (its example's): the 352 held-out digits that fill them.
    test_x, test_y = digits.test_x[:352], digits.test_y[:352]
    with torch.no_grad():
        float_top1 = (digits.model(test_x).argmax(1) == test_y).double().mean()
    predicted = torch.cat([int8_digits(batch).argmax(1) for batch in test_x.split(32)])
    int8_top1 = (predicted == test_y).double().mean()
    assert float_top1 > 0.9  # a trained model, or the comparison says nothing
    assert int8_top1 >= float_top1 - 0.005, (float(int8_top1), float(float_top1))


def test_int8_with_static_batches_runs_each_batch_in_int8(digits: Digits, tmp_path: Path) -> None:
    """static_batches=[1]: the package also holds the model quantized and compiled for one
    digit at a time, calibrated on the same rows, and keeps the held-out accuracy there; a
    batch it holds no model for is refused as before."""
    module = tsnative.export(
        digits.model,
        digits.calibration[0],
        tmp_path / "digits-1-32.pt2",
        labels=LABELS,
        quantize="int8",
        calibration=digits.calibration,
        static_batches=[1],
        progress=False,
    )
    assert "compiled for batch 1 alone as well" in module.optimization
    with zipfile.ZipFile(module.path) as package:
        wrappers = {
            name.split("/")[3]: package.read(name).decode()
            for name in package.namelist()
            if name.endswith(".wrapper.cpp")
        }
    assert set(wrappers) == {"model", "batch_1"}
    assert all("qlinear" in code and "qconv" in code for code in wrappers.values())
    test_x, test_y = digits.test_x, digits.test_y
    with torch.no_grad():
        float_top1 = (digits.model(test_x).argmax(1) == test_y).double().mean()
    one_at_a_time = torch.cat([module(image).argmax(1) for image in test_x.split(1)])
    int8_top1 = (one_at_a_time == test_y).double().mean()
    assert int8_top1 >= float_top1 - 0.005, (float(int8_top1), float(float_top1))
    assert module(test_x[:32]).shape == (32, 10)  # the example's batch
    with pytest.raises(tsnative.ArgumentError, match=r"dimension 0 \(exported as 32\)"):
        module(test_x[:5])


def test_int8_package_runs_onednn_int8_kernels(int8_digits: tsnative.Module) -> None:
    """The convolutions and the linear layer lowered to oneDNN's int8 ops, not float32 kernels
    between quantize and dequantize steps (what a package without Inductor's quantization
    passes does, at float32's speed)."""
    with zipfile.ZipFile(int8_digits.path) as package:
        wrapper = next(
            package.read(name).decode()
            for name in package.namelist()
            if name.endswith(".wrapper.cpp")
        )
    assert wrapper.count("qconv") >= 2 and "qlinear" in wrapper
    assert "aoti_torch_cpu_convolution" not in wrapper


def _expected_int8_instructions() -> str:
    capability = torch._C._cpu._get_cpu_capability()
    if capability.get("amx_int8"):
        return "AMX-INT8 tiles"
    if capability.get("avx512_vnni"):
        return "AVX512-VNNI"
    if capability.get("avx_vnni"):
        return "AVX-VNNI"
    return "no VNNI or AMX"


def test_int8_optimization_says_how_and_what_this_cpu_runs_it_on(
    int8_digits: tsnative.Module,
) -> None:
    optimization = int8_digits.optimization
    assert "int8: PT2E static quantization" in optimization
    assert "calibrated on 8 batches" in optimization
    assert f"int8 on this CPU: {_expected_int8_instructions()}" in optimization
    # 7-bit activations exactly where the CPU has no int8 dot product (they would overflow)
    has_vnni = _expected_int8_instructions() != "no VNNI or AMX"
    assert ("7-bit activations" in optimization) == (not has_vnni)
    assert tsnative.cpu_has_vnni() == has_vnni
    assert "for inputs [[32, 1, 32, 32]]" in optimization
    assert int8_digits.labels == LABELS


def test_int8_export_reports_its_accuracy_against_the_float_model(
    digits: Digits, int8_digits: tsnative.Module
) -> None:
    report = int8_digits.accuracy
    assert report is not None
    # the calibration batches, the example (the first of them), the check input
    assert report.inputs == 8 + 2
    assert report.rows == 256 + 32 + 32
    # The report's figures, recomputed here from the package and eager outputs.
    batches = [*digits.calibration, digits.test_x[:32]]
    with torch.no_grad():
        expected = torch.cat([digits.model(batch) for batch in batches])
    actual = torch.cat([int8_digits(batch) for batch in batches])
    cosine = torch.nn.functional.cosine_similarity(actual.double(), expected.double(), dim=1)
    assert report.cosine_min <= cosine.min().item() + 1e-9
    assert report.cosine_min >= 0.99
    agreement = (actual.argmax(1) == expected.argmax(1)).double().mean().item()
    assert report.top1_agreement is not None and abs(report.top1_agreement - agreement) < 0.01
    assert report.top1_checked  # it has labels: its outputs are class scores
    assert "top-1 agreement" in str(report) and "not checked" not in str(report)


class NearTie(nn.Module):
    """Two scores 0.001 * x[1] apart: int8 (weights per channel, 1/127 of the largest) rounds
    the difference away, and the top-1 choice with it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.001]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _near_tie_batches() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(32, 2, generator=generator) for _ in range(4)]


def test_int8_below_the_threshold_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    batches = _near_tie_batches()
    path = tmp_path / "tie.pt2"
    # With labels its outputs are class scores, held to the default top-1 threshold.
    with pytest.raises(tsnative.ExportError, match=r"min_top1_agreement 95\.00%") as raised:
        tsnative.export(
            NearTie().eval(), batches[0], path, labels=["left", "right"], quantize="int8",
            calibration=batches, progress=False,
        )  # fmt: skip
    assert "too far from the float model" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_int8_top1_without_labels_is_checked_only_when_asked(tmp_path: Path) -> None:
    """An output without labels may be an embedding, whose largest component is no class: its
    top-1 agreement is reported, and checked only against a threshold the caller gives."""
    batches = _near_tie_batches()
    options = {"quantize": "int8", "calibration": batches, "progress": False}
    written = tsnative.export(NearTie().eval(), batches[0], tmp_path / "tie.pt2", **options)
    report = written.accuracy
    assert report is not None and not report.top1_checked
    with torch.no_grad():
        expected = torch.cat([NearTie()(batch) for batch in batches])
    agreement = (torch.cat([written(b) for b in batches]).argmax(1) == expected.argmax(1)).double()
    assert report.top1_agreement is not None and report.top1_agreement < 0.95
    assert abs(report.top1_agreement - agreement.mean().item()) < 0.05
    assert report.cosine_min >= 0.99
    assert "(not checked: no labels" in str(report)
    with pytest.raises(tsnative.ExportError, match=r"min_top1_agreement 90\.00%"):
        tsnative.export(
            NearTie().eval(), batches[0], tmp_path / "asked.pt2", min_top1_agreement=0.9, **options
        )
    assert not (tmp_path / "asked.pt2").exists()


def test_int8_arguments_are_checked_before_any_work(digits: Digits, tmp_path: Path) -> None:
    model, example = digits.model, digits.train_x[:8]
    with pytest.raises(ValueError, match=r"AOTInductor package \(\.pt2\), not TorchScript"):
        tsnative.export(model, example, tmp_path / "m.pt", quantize="int8", calibration=[example])
    with pytest.raises(ValueError, match="needs calibration="):
        tsnative.export(model, example, tmp_path / "m.pt2", quantize="int8")
    with pytest.raises(ValueError, match="needs calibration="):
        tsnative.export(model, example, tmp_path / "m.pt2", quantize="int8", calibration=[])
    with pytest.raises(ValueError, match="calibration= is for quantize='int8'"):
        tsnative.export(model, example, tmp_path / "m.pt2", calibration=[example])
    with pytest.raises(ValueError, match="quantize must be 'int8' or None, not 'int4'"):
        tsnative.export(model, example, tmp_path / "m.pt2", quantize="int4", calibration=[example])
    with pytest.raises(ValueError, match="keep_float= is for quantize='int8'"):
        tsnative.export(model, example, tmp_path / "m.pt2", keep_float=["*"])
    with pytest.raises(ValueError, match="keep_float pattern 'head' matches no submodule"):
        tsnative.export(
            model, example, tmp_path / "m.pt2", quantize="int8", calibration=[example],
            keep_float=["head"],
        )  # fmt: skip
    with pytest.raises(ValueError, match="min_cosine must lie in"):
        tsnative.export(
            model, example, tmp_path / "m.pt2", quantize="int8", calibration=[example], min_cosine=2
        )
    assert list(tmp_path.iterdir()) == []


def test_int8_calibration_batch_that_does_not_run_is_named(digits: Digits, tmp_path: Path) -> None:
    good = digits.train_x[:8]
    with pytest.raises(ValueError, match=r"calibration batch #2 has \[\[4, 1, 32, 32\]\]"):
        tsnative.export(
            digits.model, good, tmp_path / "m.pt2", quantize="int8", calibration=[good, good[:4]]
        )
    with pytest.raises(tsnative.ExportError, match="calibration batch #2 does not run"):
        tsnative.export(
            digits.model,
            good,
            tmp_path / "m.pt2",
            quantize="int8",
            calibration=[good, torch.zeros(8, 1, 32, 32, dtype=torch.int64)],
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


class EncoderWithPooler(nn.Module):
    """Returns (hidden states, pooled), as transformers' BertModel does: the pooled output is
    a linear layer and a tanh module on the first token."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(16, 16)
        self.pooler = nn.Sequential(nn.Linear(16, 16), nn.Tanh())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.relu(self.layer(x))
        return hidden, self.pooler(hidden[:, 0])


class MeanPooled(nn.Module):
    """all-MiniLM-L6-v2's head: the mean of the hidden states; the pooler's output unused."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = EncoderWithPooler()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.encoder(x)
        return hidden.mean(1)


def test_int8_quantizes_a_model_that_drops_an_output_it_computes(tmp_path: Path) -> None:
    # The x86 quantizer failed on the unused linear + tanh (an IndexError from torchao) until
    # the captured graph lost its dead code first.
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(4, 8, 16, generator=generator) for _ in range(4)]
    model = MeanPooled().eval()
    module = tsnative.export(
        model, batches[0], tmp_path / "pooled.pt2", quantize="int8", calibration=batches
    )
    with torch.no_grad():
        want = model(batches[1])
    got = module(batches[1])
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.99
    assert "int8" in module.optimization


def _small_encoder() -> tuple[nn.Module, list[torch.Tensor]]:
    """A 2-layer nn.TransformerEncoder (8 linear layers) and 4 batches for it."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    generator = torch.Generator().manual_seed(2)
    return model, [torch.randn(2, 8, 32, generator=generator) for _ in range(4)]


def test_int8_quantizes_a_transformer_encoder_behind_its_fused_fast_path(tmp_path: Path) -> None:
    # In eval, nn.TransformerEncoder runs one fused kernel per layer, in which the quantizer
    # sees no linear layer: the package was float32 under an int8 name until the model was
    # captured without that fast path.
    model, batches = _small_encoder()
    module = tsnative.export(
        model, batches[0], tmp_path / "encoder.pt2", quantize="int8", calibration=batches
    )
    # All four linear layers of each layer: the attention's input and output projections too
    # (the x86 quantizer alone annotates only the feed-forward two; without the capture
    # change, none).
    assert "8 layers' weights in int8" in module.optimization
    with torch.no_grad():
        want = model(batches[1])
    got = module(batches[1])
    assert not torch.equal(got, want)  # int8 arithmetic, not the float kernel
    cosine = torch.nn.functional.cosine_similarity(got.flatten(1), want.flatten(1))
    assert cosine.min() > 0.99
    assert torch.backends.mha.get_fastpath_enabled()  # the switch is restored


def test_int8_keep_float_leaves_the_named_layers_in_float32(tmp_path: Path) -> None:
    model, batches = _small_encoder()
    module = tsnative.export(
        model,
        batches[0],
        tmp_path / "encoder.pt2",
        quantize="int8",
        calibration=batches,
        keep_float=["layers.?.linear2"],  # each layer's feed-forward output
        progress=False,
    )
    # 8 linear layers, 2 of them named: 6 quantized.
    assert "6 layers' weights in int8, 2 submodules kept in float32" in module.optimization
    with torch.no_grad():
        want = model(batches[1])
    cosine = torch.nn.functional.cosine_similarity(module(batches[1]).flatten(1), want.flatten(1))
    assert cosine.min() > 0.99
    # Every submodule kept: nothing left to quantize, refused before compiling.
    with pytest.raises(tsnative.ExportError, match="found no convolution or linear layer"):
        tsnative.export(
            model, batches[0], tmp_path / "all.pt2", quantize="int8", calibration=batches,
            keep_float=["*"], progress=False,
        )  # fmt: skip


def test_int8_of_a_model_with_nothing_to_quantize_is_refused(tmp_path: Path) -> None:
    batches = [torch.randn(4, 16) for _ in range(2)]
    with pytest.raises(tsnative.ExportError, match="found no convolution or linear layer"):
        tsnative.export(
            nn.Sequential(nn.Tanh()).eval(),
            batches[0],
            tmp_path / "tanh.pt2",
            quantize="int8",
            calibration=batches,
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []
