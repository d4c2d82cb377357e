"""The models measured: three from the parity zoo, a MiniLM-sized encoder, a traced Hugging Face
encoder (when transformers is installed) and silero-vad (a model written by others, shipped as
TorchScript and ONNX by its PyPI package)."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checks import Check, check_output, flatten
from .common import zoo

CLASSIFIER = "resnet18"  # the classifier of the start-up, overhead and throughput sections
SEQUENCE = 128  # tokens per row of the encoders
SAMPLE_RATE = 16000  # silero-vad: 512 samples (32 ms) per chunk at 16 kHz
CHUNK = 512
CALIBRATION_BATCHES = 8  # per int8 runner, from the same seeded distribution as the inputs
CONTEXT = 64  # samples of the previous chunk silero-vad's ONNX file expects before each chunk


@dataclass(frozen=True)
class BenchModel:
    """How to build, save, feed and check one benchmark model."""

    name: str
    about: str
    check: str  # "top5" (classifier), "cosine" (encoder: fast is held to cosine >= 0.99), "max_abs"
    eager: Callable[[], Callable[..., Any]]  # the reference: eager PyTorch (or the model's own)
    inputs: Callable[[int], tuple[Any, ...]]  # forward's arguments at a batch size
    save_torchscript: Callable[[Path], Path]
    # ONNX: exported from eager by default; a model that ships its own file gives it here
    shipped_onnx: Callable[[], Path] | None = None
    onnx_feed: Callable[[tuple[Any, ...], Sequence[str]], dict[str, np.ndarray]] | None = None
    onnx_outputs: tuple[str, ...] = ()  # those forward returns, where the file has more
    # called before every forward by every runner (a stateful model's reset)
    reset: str | None = None
    ts_infer_reason: str = ""  # why ts-infer cannot run it ("" when it can)
    int8: bool = False  # measured at the int8 level too (tsnative's, ONNX Runtime's, NNCF's)
    missing: Callable[[], str] = lambda: ""  # why it cannot run here ("" when it can)

    def feed(self, inputs: tuple[Any, ...], names: Sequence[str]) -> dict[str, np.ndarray]:
        """The ONNX file's inputs, by name, for forward's arguments."""
        if self.onnx_feed is not None:
            return self.onnx_feed(inputs, names)
        return {name: tensor.numpy() for name, tensor in zip(names, inputs, strict=True)}


def _zoo_inputs(name: str) -> Callable[[int], tuple[torch.Tensor, ...]]:
    def inputs(batch: int) -> tuple[torch.Tensor, ...]:
        """The zoo's input shape at this batch size, filled with seeded normal noise."""
        (example,) = zoo().ZOO[name].cases["b1"]()
        generator = torch.Generator().manual_seed(1000 + batch)
        return (torch.randn(batch, *example.shape[1:], generator=generator),)

    return inputs


def _scripted(build: Callable[[], torch.nn.Module], name: str) -> Callable[[Path], Path]:
    def save(directory: Path) -> Path:
        path = directory / f"{name}.pt"
        torch.jit.save(torch.jit.script(build()), str(path))
        return path

    return save


def _zoo_model(name: str, about: str, check: str, int8: bool = False) -> BenchModel:
    return BenchModel(
        name,
        about,
        check,
        eager=lambda: zoo().build(name),
        inputs=_zoo_inputs(name),
        save_torchscript=_scripted(lambda: zoo().build(name), name),
        int8=int8,
    )


# --- a MiniLM-sized encoder (nn.TransformerEncoder) -------------------------------------------


def minilm_sized_encoder() -> torch.nn.Module:
    """6 layers, d_model 384, 12 heads, FFN 1536: all-MiniLM-L6's shape, seeded random weights."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(384, 12, 1536, dropout=0.1, batch_first=True)
    return torch.nn.TransformerEncoder(layer, 6, enable_nested_tensor=False).eval()


def _encoder_inputs(batch: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(2000 + batch)
    return (torch.randn(batch, SEQUENCE, 384, generator=generator),)


# --- a Hugging Face BERT-style encoder, traced --------------------------------------------------


def _transformers_missing() -> str:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return "transformers is not installed (make bench installs requirements-bench.txt)"
    return ""


def hf_encoder() -> torch.nn.Module:
    """transformers' BertModel in all-MiniLM-L6's configuration, seeded random weights (no
    download), returning tuples (torchscript=True) so that it traces."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        torchscript=True,
        attn_implementation="sdpa",
    )
    return BertModel(config).eval()


class HFEncoder(torch.nn.Module):
    """forward(ids, mask) -> (last hidden state, pooled): the call a deployment makes, by
    keyword, which both the tracer and the ONNX exporter take positionally."""

    def __init__(self) -> None:
        super().__init__()
        self.bert = hf_encoder()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden, pooled = self.bert(input_ids=ids, attention_mask=mask)[:2]
        return hidden, pooled


def _hf_inputs(batch: int) -> tuple[torch.Tensor, ...]:
    """Token ids and an attention mask whose rows end in different amounts of padding."""
    generator = torch.Generator().manual_seed(3000 + batch)
    ids = torch.randint(1000, 30000, (batch, SEQUENCE), generator=generator)
    lengths = torch.randint(SEQUENCE // 2, SEQUENCE + 1, (batch,), generator=generator)
    mask = (torch.arange(SEQUENCE)[None, :] < lengths[:, None]).to(torch.int64)
    return ids, mask


def _save_traced_hf_encoder(directory: Path) -> Path:
    path = directory / "hf_encoder.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings on Python control flow
        traced = torch.jit.trace(HFEncoder().eval(), _hf_inputs(1), strict=False)
    torch.jit.save(traced, str(path))
    return path


# --- silero-vad --------------------------------------------------------------------------------


def _silero_missing() -> str:
    from importlib.util import find_spec

    if find_spec("silero_vad") is None:
        return "silero-vad is not installed (make bench installs requirements-bench.txt)"
    return ""


def _silero_file(name: str) -> Path:
    """A file the package ships, found without importing it: `import silero_vad` calls
    torch.set_num_threads(1), which would slow every runner after it."""
    from importlib.util import find_spec

    spec = find_spec("silero_vad")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "data" / name


def _silero_inputs(batch: int) -> tuple[Any, ...]:
    generator = torch.Generator().manual_seed(4000 + batch)
    return (0.1 * torch.randn(batch, CHUNK, generator=generator), SAMPLE_RATE)


def _silero_feed(inputs: tuple[Any, ...], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The ONNX file's stateless form of one chunk from a fresh stream: zero context before the
    chunk, zero recurrent state, the sample rate."""
    chunk, rate = inputs
    batch = chunk.shape[0]
    values = {
        "input": torch.cat([torch.zeros(batch, CONTEXT), chunk], dim=1).numpy(),
        "state": np.zeros((2, batch, 128), np.float32),
        "sr": np.array(rate, np.int64),
    }
    return {name: values[name] for name in names}


def _load_silero_torchscript() -> Callable[..., Any]:
    return torch.jit.load(str(_silero_file("silero_vad.jit")))


# --- the registry -----------------------------------------------------------------------------

MODELS: dict[str, BenchModel] = {
    model.name: model
    for model in (
        _zoo_model("resnet18", "ResNet-18, 3x224x224", "top5", int8=True),
        BenchModel(
            "encoder",
            "nn.TransformerEncoder 6 x 384, 12 heads, FFN 1536, seq 128",
            "cosine",
            eager=minilm_sized_encoder,
            inputs=_encoder_inputs,
            save_torchscript=_scripted(minilm_sized_encoder, "encoder"),
            int8=True,
        ),
        BenchModel(
            "hf_encoder",
            "transformers BertModel 6 x 384 (MiniLM-L6's shape), traced, int64 ids + mask, seq 128",
            "cosine",
            eager=lambda: HFEncoder().eval(),
            inputs=_hf_inputs,
            save_torchscript=_save_traced_hf_encoder,
            missing=_transformers_missing,
            int8=True,
        ),
        BenchModel(
            "silero_vad",
            "silero-vad (its own TorchScript and ONNX files), one 512-sample chunk, fresh state",
            "max_abs",
            eager=_load_silero_torchscript,
            inputs=_silero_inputs,
            save_torchscript=lambda directory: _silero_file("silero_vad.jit"),
            # the file the package ships for runtimes without ONNX If (OpenVINO), batchable
            shipped_onnx=lambda: _silero_file("silero_vad_op18_ifless.onnx"),
            onnx_feed=_silero_feed,
            onnx_outputs=("output",),  # the probability; not the next state
            reset="reset_states",
            ts_infer_reason="forward takes an int (the sample rate); ts-infer passes tensor files",
            missing=_silero_missing,
        ),
        _zoo_model("lstm", "the zoo's LSTM (parity suite), seq 5 x 8", "max_abs"),
        _zoo_model("transformer", "the zoo's small TransformerEncoder, 2 x 16", "max_abs"),
    )
}
DEFAULT_MODELS = ("resnet18", "encoder", "hf_encoder", "silero_vad", "lstm")


def make_input(name: str, batch: int) -> tuple[Any, ...]:
    return MODELS[name].inputs(batch)


def call_with_reset(model: BenchModel, run: Callable[..., Any], reset: Callable[[], Any]):
    """forward, after the model's reset where it keeps state between calls."""
    if model.reset is None:
        return run
    return lambda *args: (reset(), run(*args))[1]


@dataclass
class Case:
    """One latency table: a model at a batch size, its inputs and eager's output."""

    model: BenchModel
    batch: int
    script_path: Path
    inputs: tuple[Any, ...]
    eager: Callable[..., Any]
    reference: list[torch.Tensor]

    @staticmethod
    def make(model: BenchModel, batch: int, script_path: Path) -> Case:
        inputs = model.inputs(batch)
        eager = model.eager()
        run = call_with_reset(model, eager, lambda: getattr(eager, model.reset or "")())
        with torch.inference_mode():
            reference = [tensor.clone() for tensor in flatten(run(*inputs))]
        return Case(model, batch, script_path, inputs, run, reference)

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        return tuple(value for value in self.inputs if isinstance(value, torch.Tensor))

    def check(self, output: Any, *, reduced_precision: bool, quantized: bool = False) -> Check:
        return check_output(
            output,
            self.reference,
            kind=self.model.check,
            reduced_precision=reduced_precision,
            quantized=quantized,
        )

    def calibration(self, batches: int = CALIBRATION_BATCHES) -> list[tuple[Any, ...]]:
        """Inputs for the int8 levels' calibration, at this case's batch size (their packages
        and files have static shapes): one draw of `batches` times the rows, split, so that no
        calibration batch is the measured input."""
        drawn = self.model.inputs(self.batch * batches)
        return [tuple(value[i::batches] for value in drawn) for i in range(batches)]

    def export_onnx(self, path: Path) -> Path:
        """The model's own ONNX file, or eager's exported by the TorchScript-based exporter at
        opset 17 with static shapes (one file per batch size)."""
        if self.model.shipped_onnx is not None:
            return self.model.shipped_onnx()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                self.eager,
                self.inputs,
                str(path),
                dynamo=False,
                opset_version=17,
                do_constant_folding=True,
            )
        return path
