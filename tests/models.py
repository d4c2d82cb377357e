"""The model zoo of the parity suite: small seeded models covering what TorchScript can carry.

Each `ModelSpec` builds an eval-mode module with deterministic (seeded) weights and names the
input cases it is checked on ("b1", "b4": batch sizes; other names where batching does not
apply). Nothing is downloaded; ResNet-18 comes from examples/resnet18.py (on sys.path through
conftest.py), and where torchvision imports, torchvision's own ResNet-18 and MobileNetV3-Small
(random weights) join the zoo. `SavedModels` (the `saved_models` fixture) exports each model
once per session.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from helpers import assert_outputs_equal, torchvision
from resnet18 import resnet18
from torch import Tensor, nn

Inputs = tuple[Any, ...]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(*shape, generator=_generator(seed), dtype=dtype)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[[], nn.Module]
    # case id -> the positional inputs of forward for that case
    cases: dict[str, Callable[[], Inputs]]
    traceable: bool = True
    # torch.jit.trace(strict=False) is needed for models returning a dict
    trace_strict: bool = True
    # forward returns one floating tensor (class scores last): top-k applies to it
    logits: bool = True

    def build(self) -> nn.Module:
        torch.manual_seed(0)
        return self.factory().eval()


def batched(
    make: Callable[[int], Inputs], sizes: tuple[int, ...] = (1, 4)
) -> dict[str, Callable[[], Inputs]]:
    """Cases "b1", "b4", ... calling make(batch_size)."""
    return {f"b{size}": (lambda size=size: make(size)) for size in sizes}


# --- the models -------------------------------------------------------------------------------


class MyModule(nn.Module):
    """The C++ tutorial's module: control flow that depends on the input's values."""

    def __init__(self, n: int, m: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(n, m))

    def forward(self, input: Tensor) -> Tensor:
        if input.sum() > 0:  # noqa: SIM108 (the tutorial's code as written)
            output = self.weight.mv(input)
        else:
            output = self.weight + input
        return output


class SmallCNN(nn.Module):
    """Conv + BatchNorm + Dropout: only correct in eval mode (running stats, no dropout)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(16, classes)
        with torch.no_grad():  # non-trivial running stats, so eval and train mode differ
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.5, 0.5)
                    module.running_var.uniform_(0.5, 2.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(torch.flatten(self.features(x), 1)))


class LSTMModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=8, hidden_size=16, num_layers=2, batch_first=True)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        output, (h, c) = self.lstm(x)
        return output, (h, c)


class Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=16, nhead=2, dim_feedforward=32, dropout=0.1, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 6)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x).mean(1))


class MultiIO(nn.Module):
    """Several tensor inputs, a tuple out."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 4)

    def forward(self, a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        y = self.linear(a) + b
        return y, (y * c).sum(-1)


class DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(5, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = torch.relu(self.body(x))
        return {"features": features, "logits": self.head(features)}


class ScalarArgs(nn.Module):
    """int / float / str / bool / Optional[Tensor] arguments, as TorchScript types them."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(
        self, x: Tensor, repeat: int, scale: float, mode: str, flag: bool, bias: Tensor | None
    ) -> Tensor:
        y = self.linear(x)
        for _ in range(repeat):
            y = torch.tanh(y) * scale
        if bias is not None:
            y = y + bias
        if flag:
            y = -y
        if mode == "sum":
            return y.sum(-1)
        if mode == "mean":
            return y.mean(-1)
        raise ValueError("mode must be 'sum' or 'mean'")


class WithExports(nn.Module):
    """forward plus @torch.jit.export methods, one of them changing the module's state."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 5)
        self.head = nn.Linear(5, 7)
        self.register_buffer("memory", torch.randn(5))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encode(x))

    @torch.jit.export
    def encode(self, x: Tensor) -> Tensor:
        return torch.relu(self.proj(x)) + self.memory

    @torch.jit.export
    def reset_states(self) -> None:
        self.memory.zero_()

    @torch.jit.export
    def get_memory(self) -> Tensor:
        return self.memory.clone()


class Embedder(nn.Module):
    """int64 input (token ids)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 8)
        self.fc = nn.Linear(8, 12)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.fc(self.embedding(tokens).mean(1))


class TokenClassifier(nn.Module):
    """Shaped as a Hugging Face encoder: int64 token ids and attention mask in, int64 index
    buffers (position_ids, token_type_ids) read with gather, the mask cast to the hidden dtype,
    which tracing records as float32."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(60, 16)
        self.positions = nn.Embedding(10, 16)
        self.segments = nn.Embedding(2, 16)
        self.register_buffer("position_ids", torch.arange(10).unsqueeze(0))
        self.register_buffer("token_type_ids", torch.zeros(1, 10, dtype=torch.long))
        self.qkv = nn.Linear(16, 48)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 5)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        batch, length = ids.shape[0], ids.shape[1]
        positions = self.position_ids[:, :length].expand(batch, -1)
        segments = torch.gather(self.token_type_ids.expand(batch, -1), 1, positions)
        h = self.tokens(ids) + self.positions(positions) + self.segments(segments)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        bias = (1.0 - mask[:, None, :].to(h.dtype)) * -10000.0
        scores = q @ k.transpose(1, 2) / 4.0 + bias
        h = self.norm(h + torch.softmax(scores, dim=-1) @ v)
        return self.head(h[:, 0])


def _tokens_and_mask(batch: int) -> Inputs:
    ids = torch.randint(0, 60, (batch, 9), generator=_generator(batch))
    mask = torch.ones(batch, 9, dtype=torch.long)
    mask[:, 6 + batch % 3 :] = 0  # padding at the end, as a tokenizer pads
    return ids, mask


def mlp_float64() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 32), nn.Tanh(), nn.Linear(32, 9)).double()


class Identity(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Doubler(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * 2


class ListOut(nn.Module):
    def forward(self, x: Tensor) -> list[Tensor]:
        return [x, x * 2]


class Raiser(nn.Module):
    """Raises from inside TorchScript, or fails on a shape mismatch."""

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 100:
            raise ValueError("input too large: sum exceeds 100")
        return torch.mm(x, x)


# --- the zoo ----------------------------------------------------------------------------------

ZOO: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "resnet18",
            lambda: resnet18(seed=0),
            batched(lambda n: (_rand(n, 3, 224, 224, seed=n),), (1, 4)),
        ),
        ModelSpec(
            "my_module",
            lambda: MyModule(3, 4),
            {
                # sum > 0: weight.mv(input) -> [3]; sum <= 0: weight + input -> [3, 4]
                "positive": lambda: (torch.tensor([1.0, 2.0, 0.5, 0.25]),),
                "negative": lambda: (torch.tensor([-1.0, -2.0, 0.5, 0.25]),),
            },
            traceable=False,  # tracing freezes whichever branch the example input took
        ),
        ModelSpec(
            "cnn_bn_dropout",
            SmallCNN,
            batched(lambda n: (_rand(n, 3, 16, 16, seed=n),)),
        ),
        ModelSpec(
            "lstm",
            LSTMModel,
            batched(lambda n: (_rand(n, 5, 8, seed=n),)),
            logits=False,
        ),
        ModelSpec(
            "transformer",
            Transformer,
            batched(lambda n: (_rand(n, 6, 16, seed=n),)),
        ),
        ModelSpec(
            "multi_io",
            MultiIO,
            batched(
                lambda n: (
                    _rand(n, 6, seed=n),
                    _rand(n, 4, seed=n + 1),
                    _rand(n, 4, seed=n + 2),
                )
            ),
            logits=False,
        ),
        ModelSpec(
            "dict_out",
            DictOut,
            batched(lambda n: (_rand(n, 5, seed=n),)),
            trace_strict=False,
            logits=False,
        ),
        ModelSpec(
            "scalar_args",
            ScalarArgs,
            {
                "sum_bias": lambda: (_rand(2, 4, seed=1), 2, 0.5, "sum", True, _rand(4, seed=2)),
                "mean_none": lambda: (_rand(3, 4, seed=3), 1, 2.0, "mean", False, None),
            },
            traceable=False,  # str / bool / None arguments cannot be traced
        ),
        ModelSpec("with_exports", WithExports, batched(lambda n: (_rand(n, 6, seed=n),))),
        ModelSpec(
            "embedding_int64",
            Embedder,
            batched(lambda n: (torch.randint(0, 50, (n, 7), generator=_generator(n)),)),
        ),
        ModelSpec("token_classifier", TokenClassifier, batched(_tokens_and_mask)),
        ModelSpec(
            "mlp_float64",
            mlp_float64,
            batched(lambda n: (_rand(n, 12, seed=n, dtype=torch.float64),)),
        ),
    ]
}


def _torchvision_model(
    factory: Callable[..., nn.Module], head: Callable[[nn.Module], nn.Linear], inputs: Tensor
) -> nn.Module:
    """A torchvision classifier, random weights made to behave like trained ones where it shows.

    BatchNorm statistics are gathered from a few random batches, as training leaves them (the
    defaults, mean 0 and variance 1, put a deep random network's activations at scales no
    trained model has). The last linear layer is then solved by least squares so that each of
    `inputs` (every test case's, stacked) gets ten classes ranked with logit margins of 1, as a
    trained classifier ranks its data: random weights leave the top classes within 1e-3 of
    each other, where no reduced precision (optimize="bf16") could keep their order.
    """
    model = factory(weights=None)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = None  # a plain average over the batches below
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(_rand(8, 3, 224, 224, seed=100 + seed))
    for norm in norms:
        norm.momentum = 0.1
    model.eval()
    layer = head(model)
    features: list[Tensor] = []
    hook = layer.register_forward_hook(lambda _module, args, _output: features.append(args[0]))
    with torch.no_grad():
        model(inputs)
    hook.remove()
    n, classes = inputs.shape[0], layer.out_features
    generator = _generator(0)
    target = -torch.rand(n, classes, generator=generator, dtype=torch.float64)  # in (-1, 0]
    ranked = torch.arange(10.0, 0.0, -1.0, dtype=torch.float64)
    for row in target:
        row[torch.randperm(classes, generator=generator)[:10]] = ranked
    design = torch.cat([features[0].double(), torch.ones(n, 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, target, driver="gelsd").solution
    with torch.no_grad():
        layer.weight.copy_(solution[:-1].T)
        layer.bias.copy_(solution[-1])
    return model


def _torchvision_spec(name: str, factory: Callable[..., nn.Module], head) -> ModelSpec:
    cases = batched(lambda n: (_rand(n, 3, 224, 224, seed=n),), (1, 2))
    inputs = torch.cat([make()[0] for make in cases.values()])
    return ModelSpec(name, lambda: _torchvision_model(factory, head, inputs), cases)


if torchvision is not None:
    for _spec in [
        _torchvision_spec(
            "torchvision_resnet18", torchvision.models.resnet18, lambda model: model.fc
        ),
        _torchvision_spec(
            "torchvision_mobilenet_v3_small",
            torchvision.models.mobilenet_v3_small,
            lambda model: model.classifier[-1],
        ),
    ]:
        ZOO[_spec.name] = _spec


# Small single-purpose models used by the API, error and CLI tests (script export only).
EXTRAS: dict[str, Callable[[], nn.Module]] = {
    "identity": Identity,
    "doubler": Doubler,
    "raiser": Raiser,
    "list_out": ListOut,
}


def build(name: str) -> nn.Module:
    """A fresh eval-mode instance of a ZOO or EXTRAS model, with seeded weights."""
    if name in ZOO:
        return ZOO[name].build()
    torch.manual_seed(0)
    return EXTRAS[name]().eval()


def export(model: nn.Module, how: str, example_inputs: Inputs, *, strict: bool = True) -> Any:
    """torch.jit.script or torch.jit.trace (with example_inputs) of an eval-mode model."""
    if how == "script":
        return torch.jit.script(model)
    if how == "trace":
        with warnings.catch_warnings():
            # TracerWarnings are expected where tracing bakes in a branch (tested on purpose).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.trace(model, example_inputs, strict=strict, check_trace=False)
    raise ValueError(f"unknown export {how!r}")


def example_and_checks(name: str) -> tuple[Inputs, list[Inputs]]:
    """For exports through torch.export: a ZOO model's largest case as the example (a batch of
    1 can be specialised into the graph), the others as check inputs."""
    cases = {case: make() for case, make in ZOO[name].cases.items()}
    largest = max(cases, key=lambda case: cases[case][0].numel() if cases[case] else 0)
    return cases[largest], [inputs for case, inputs in cases.items() if case != largest]


# The ZOO models that torch.export (and so .pt2 and ONNX) refuses, by design, with what its
# message must say. Any other model that does not export is a failure, not a skip: a
# regression in the exporters must not pass quietly.
TORCH_EXPORT_REFUSES = {
    "my_module": "if input.sum() > 0",  # data-dependent control flow: TorchScript's to keep
    "scalar_args": "takes tensors only",  # str / bool / None arguments
}
TORCH_EXPORTABLE = [name for name in ZOO if name not in TORCH_EXPORT_REFUSES]


def export_zoo(directory: Path, suffix: str) -> dict[str, Path | str]:
    """Each ZOO model exported with tsnative.export to `directory`/<name><suffix> (a format
    that goes through torch.export): its path, or the ExportError's message saying why not."""
    import tsnative

    exported: dict[str, Path | str] = {}
    for name in ZOO:
        example, checks = example_and_checks(name)
        path = directory / f"{name}{suffix}"
        try:
            tsnative.export(build(name), example, path, check_inputs=checks, progress=False)
        except tsnative.ExportError as error:
            exported[name] = str(error)
        else:
            exported[name] = path
    return exported


def parity_params(*, logits_only: bool = False) -> list[tuple[str, str, str]]:
    """(model, export, case) for every model, export that is valid for it, and input case."""
    params = []
    for spec in ZOO.values():
        if logits_only and not spec.logits:
            continue
        exports = ("script", "trace") if spec.traceable else ("script",)
        for how in exports:
            for case in spec.cases:
                params.append((spec.name, how, case))
    return params


class SavedModels:
    """Builds, exports and saves models lazily, once per session; caches reference outputs.

    Cached outputs are shared between tests: never modify them in place.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._eager: dict[str, torch.nn.Module] = {}
        self._paths: dict[tuple[str, str], Path] = {}
        self._outputs: dict[tuple[str, ...], Any] = {}

    def eager(self, name: str) -> torch.nn.Module:
        if name not in self._eager:
            self._eager[name] = build(name)
        return self._eager[name]

    def path(self, name: str, how: str = "script") -> Path:
        """The TorchScript file of model `name` exported with `how` ("script" or "trace")."""
        key = (name, how)
        if key not in self._paths:
            spec = ZOO.get(name)
            example = spec.cases[next(iter(spec.cases))]() if spec else ()
            strict = spec.trace_strict if spec else True
            exported = export(self.eager(name), how, example, strict=strict)
            path = self.directory / f"{name}-{how}.pt"
            torch.jit.save(exported, str(path))
            self._paths[key] = path
        return self._paths[key]

    @staticmethod
    def inputs(name: str, case: str) -> Inputs:
        """Fresh (deterministic) inputs of a ZOO model's case."""
        return ZOO[name].cases[case]()

    def eager_output(self, name: str, case: str) -> Any:
        key = ("eager", name, case)
        if key not in self._outputs:
            with torch.no_grad():
                self._outputs[key] = self.eager(name)(*self.inputs(name, case))
        return self._outputs[key]

    def exported_cases(
        self, name: str, exported: Path | str, what: str
    ) -> Iterator[tuple[str, Inputs, Any, Any]]:
        """Each case of ZOO model `name` run from `exported`, a file of another format:
        (case, inputs, the native output, the eager output). `exported` a str: the reason the
        model did not export `what`, which fails the test (TORCH_EXPORT_REFUSES lists the
        refusals that are expected, tested on their own). The file has forward alone, and
        tsnative.infer gives what the loaded module gives."""
        import pytest
        import tsnative

        if isinstance(exported, str):
            pytest.fail(f"{name} did not export {what}: {exported}")
        module = tsnative.load(exported)
        assert module.methods == ["forward"]
        for case in ZOO[name].cases:
            inputs = self.inputs(name, case)
            actual = module(*inputs)
            leaves = torch.utils._pytree.tree_leaves
            assert_outputs_equal(
                leaves(tsnative.infer(exported, *inputs)), leaves(actual), exact=True
            )
            yield case, inputs, actual, self.eager_output(name, case)

    def torchscript_output(self, name: str, how: str, case: str) -> Any:
        """Python's own TorchScript run (torch.jit.load) of the saved file.

        Under no_grad, as the native core runs with autograd off: TransformerEncoder's
        scripted code takes its fast path only when grad is off, so with grad on the outputs
        differ by ~1e-7 and bit-identity would not be expected.
        """
        key = ("torchscript", name, how, case)
        if key not in self._outputs:
            loaded = torch.jit.load(str(self.path(name, how)))
            with torch.no_grad():
                self._outputs[key] = loaded(*self.inputs(name, case))
        return self._outputs[key]
