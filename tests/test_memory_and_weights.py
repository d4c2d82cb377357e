"""Loading from memory (bytes, buffers, file objects) and reading a model's weights and
attributes, in the situation of every deployment: a process that never defined the model's
Python classes (a subprocess that imports only torch and tsnative)."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import tsnative
from helpers import assert_outputs_equal
from torch import Tensor, nn


class Weighted(nn.Module):
    """Parameters, buffers (BatchNorm statistics) and attributes of several types."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.scale = 2.5
        self.name = "weighted"
        self.sizes = [3, 4]
        with torch.no_grad():
            self.norm.running_mean.uniform_(-1, 1)
            self.norm.running_var.uniform_(0.5, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x)) * self.scale


@pytest.fixture(scope="module")
def weighted(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    model = Weighted().eval()
    path = tmp_path_factory.mktemp("weights") / "weighted.pt"
    torch.jit.script(model).save(str(path))
    return model, path


SOURCES: dict[str, Callable[[Path], Any]] = {
    "bytes": lambda path: path.read_bytes(),
    "bytearray": lambda path: bytearray(path.read_bytes()),
    "memoryview": lambda path: memoryview(path.read_bytes()),
    "BytesIO": lambda path: io.BytesIO(path.read_bytes()),
    "binary_file": lambda path: path.open("rb"),
}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_load_from_memory_runs_as_from_the_file(
    weighted: tuple[nn.Module, Path], kind: str
) -> None:
    eager, path = weighted
    source = SOURCES[kind](path)
    module = tsnative.load(source)
    if hasattr(source, "close"):
        source.close()
    x = torch.rand(2, 3, 8, 8)
    assert_outputs_equal(module(x), tsnative.load(path)(x), exact=True)
    with torch.no_grad():
        assert_outputs_equal(module(x), eager(x), exact=False)
    assert module.path == ""
    assert module.methods == ["forward"]


def test_load_from_memory_keeps_metadata_and_optimize_levels(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 3)).eval()
    path = tmp_path / "labelled.pt"
    tsnative.export(model, torch.rand(1, 3, 16, 16), path, labels=["a", "b", "c"])
    module = tsnative.load(path.read_bytes(), optimize="exact")
    assert module.labels == ["a", "b", "c"]
    assert module.optimization.startswith("exact")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(module.topk(x, k=3)[1], torch.softmax(model(x), -1).topk(3)[1])


def test_the_buffer_can_change_after_load(weighted: tuple[nn.Module, Path]) -> None:
    """The weights are the model's own: the buffer is read during load, not kept."""
    _, path = weighted
    data = bytearray(path.read_bytes())
    module = tsnative.load(data)
    x = torch.rand(1, 3, 8, 8)
    before = module(x)
    data[:] = bytes(len(data))
    assert torch.equal(module(x), before)


# In a process that has never seen Weighted: the weights, buffers and attributes of the bytes.
READ_WEIGHTS = """
import sys, torch, tsnative
module = tsnative.load(open(sys.argv[1], "rb").read())
parameters = module.named_parameters()
assert all(not t.requires_grad for t in parameters.values())
again = module.named_parameters()
assert all(again[n].data_ptr() == t.data_ptr() for n, t in parameters.items()), "copied"
torch.save({"parameters": parameters, "buffers": module.named_buffers(),
            "attributes": module.attributes}, sys.argv[2])
"""


def test_weights_and_attributes_read_in_a_fresh_process(
    weighted: tuple[nn.Module, Path], tmp_path: Path
) -> None:
    eager, path = weighted
    out = tmp_path / "read.pt"
    result = subprocess.run(
        [sys.executable, "-c", READ_WEIGHTS, str(path), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    read = torch.load(out, weights_only=False)  # our own file
    expected_parameters = dict(eager.named_parameters())
    assert list(read["parameters"]) == list(expected_parameters)
    for name, tensor in expected_parameters.items():
        assert torch.equal(read["parameters"][name], tensor.detach()), name
    expected_buffers = dict(eager.named_buffers())
    assert list(read["buffers"]) == list(expected_buffers)
    for name, tensor in expected_buffers.items():
        assert torch.equal(read["buffers"][name], tensor), name
    attributes = read["attributes"]
    assert (attributes["scale"], attributes["name"], attributes["sizes"]) == (
        2.5,
        "weighted",
        [3, 4],
    )
    assert attributes["conv.transposed"] is False  # a submodule's own attribute, dotted
    # nn.Module's own bookkeeping, the same on every module, is left out.
    bookkeeping = {"training", "_is_full_backward_hook"}
    assert not any(name.split(".")[-1] in bookkeeping for name in attributes), list(attributes)
    assert not any(isinstance(value, torch.Tensor) for value in attributes.values())


def test_an_optimized_model_says_where_its_weights_went(weighted: tuple[nn.Module, Path]) -> None:
    _, path = weighted
    module = tsnative.load(path, optimize="exact")
    with pytest.raises(tsnative.InferenceError, match=r"optimize='exact' froze its weights"):
        module.named_parameters()
    with pytest.raises(tsnative.InferenceError, match=r"load it with optimize='none'"):
        module.attributes  # noqa: B018


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda data: b"", r"^cannot load the model in memory \(0 bytes\): it is empty$"),
        (
            lambda data: data[:200],
            r"^the model in memory \(200 bytes, starting 'PK\\x03\\x04\\x00\\x00\\x08\\x08'\) is "
            r"not a TorchScript archive",
        ),
        (
            lambda data: b"\xff\xfe\n" * 1000,
            r"^the model in memory \(3000 bytes, starting '\\xff\\xfe\\x0a\\xff\\xfe\\x0a\\xff"
            r"\\xfe'\) is not a TorchScript archive",
        ),
        (
            lambda data: io.StringIO("not binary"),
            r"its read\(\) returned str, not bytes \(open the file in binary mode, 'rb'\)",
        ),
    ],
    ids=["empty", "truncated", "garbage", "text_file_object"],
)
def test_bad_memory_sources_are_load_errors(
    weighted: tuple[nn.Module, Path], make: Callable[[bytes], Any], match: str
) -> None:
    _, path = weighted
    with pytest.raises(tsnative.ModelLoadError, match=match) as error:
        tsnative.load(make(path.read_bytes()))
    assert len(str(error.value)) < 200  # the cause, never the bytes themselves
