"""TorchScript class instances returned by a model, in a process that never defined the class
(the model is written by a subprocess): attributes, methods, passed back in, and the errors.
Expected values are computed by hand from the class's code below."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import tsnative
from helpers import run_cli

WRITE_MODEL = """
import sys
from typing import Dict, List
import torch

@torch.jit.script
class Pair:
    def __init__(self, x: torch.Tensor, y: int):
        self.x = x
        self.y = y

    def total(self, extra: int = 0) -> torch.Tensor:
        return self.x.sum() + self.y + extra

    def swapped(self) -> "Pair":
        return Pair(self.x * 2, -self.y)

    def check(self) -> int:
        if self.y < 0:
            raise ValueError("y is negative")
        return self.y

class Maker(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.default = Pair(torch.zeros(1), 5)

    def forward(self, x: torch.Tensor) -> Pair:
        return Pair(x, 7)

    @torch.jit.export
    def make(self, x: torch.Tensor, y: int) -> Pair:
        return Pair(x, y)

    @torch.jit.export
    def product(self, pair: Pair) -> torch.Tensor:
        return pair.x * pair.y

    @torch.jit.export
    def several(self, x: torch.Tensor) -> Dict[str, List[Pair]]:
        return {"pairs": [Pair(x, 1), Pair(x, 2)]}

    @torch.jit.export
    def sum_all(self, pairs: List[Pair]) -> int:
        return sum([p.y for p in pairs])

torch.jit.script(Maker()).save(sys.argv[1])
"""


@pytest.fixture(scope="module")
def maker_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("objects")
    script = directory / "write_maker.py"  # a file: torch.jit.script reads the class's source
    script.write_text(WRITE_MODEL)
    path = directory / "maker.pt"
    subprocess.run([sys.executable, str(script), str(path)], check=True, timeout=120)
    return path


@pytest.fixture
def maker(maker_path: Path) -> tsnative.Module:
    return tsnative.load(maker_path)


@pytest.fixture
def pair(maker: tsnative.Module) -> tsnative.ScriptObject:
    return maker.make(torch.tensor([1.0, 2.0]), 3)


def test_attributes_type_and_methods(pair: tsnative.ScriptObject) -> None:
    assert isinstance(pair, tsnative.ScriptObject)
    assert pair.type_name == "Pair"
    assert pair.methods == ["check", "swapped", "total"]
    assert list(pair.attributes) == ["x", "y"]
    assert torch.equal(pair.x, torch.tensor([1.0, 2.0]))
    assert pair.y == 3
    assert repr(pair) == "tsnative.ScriptObject(Pair: x=tensor([1., 2.]), y=3)"


def test_methods_by_name_and_by_attribute(pair: tsnative.ScriptObject) -> None:
    # (1 + 2) + 3 + extra, by hand.
    assert pair.call("total", 10).item() == 16
    assert pair.total(extra=1).item() == 7
    assert pair.total().item() == 6  # the default argument
    swapped = pair.swapped()  # a method returning another instance
    assert isinstance(swapped, tsnative.ScriptObject)
    assert torch.equal(swapped.x, torch.tensor([2.0, 4.0]))
    assert swapped.y == -3


def test_objects_pass_back_into_the_model(
    maker: tsnative.Module, pair: tsnative.ScriptObject
) -> None:
    module = maker
    assert torch.equal(module.product(pair), torch.tensor([3.0, 6.0]))
    assert torch.equal(module.product(pair=pair.swapped()), torch.tensor([-6.0, -12.0]))
    nested = module.several(torch.zeros(1))
    assert [p.y for p in nested["pairs"]] == [1, 2]
    assert module.sum_all(nested["pairs"]) == 3  # a list of objects, back in
    assert module.sum_all([pair, pair.swapped()]) == 0


def test_objects_go_back_only_into_the_model_that_made_them(
    maker_path: Path, pair: tsnative.ScriptObject
) -> None:
    """Each load has its own classes: another load's Pair is another type."""
    with pytest.raises(tsnative.ArgumentError, match=r"^this Pair object was made by another"):
        tsnative.load(maker_path).product(pair)


def test_a_module_attribute_holding_an_object(maker: tsnative.Module) -> None:
    default = maker.attributes["default"]
    assert isinstance(default, tsnative.ScriptObject)
    assert (default.type_name, default.y) == ("Pair", 5)
    assert maker.product(default).tolist() == [0.0]


def test_forward_returning_an_object(maker_path: Path) -> None:
    result = tsnative.load(maker_path)(torch.ones(2))
    assert (result.type_name, result.y) == ("Pair", 7)


def test_errors_name_the_class_and_what_it_has(pair: tsnative.ScriptObject) -> None:
    with pytest.raises(AttributeError, match=r"a Pair object has no attribute or method 'z' "):
        pair.z  # noqa: B018
    with pytest.raises(
        tsnative.InferenceError, match=r"^a Pair object has no method 'nope' \(it has: check, "
    ):
        pair.call("nope")
    with pytest.raises(tsnative.ArgumentError, match=r"extra"):
        pair.total("ten")
    with pytest.raises(tsnative.InferenceError, match=r"^Pair.check\(\) raised ValueError: y is"):
        pair.swapped().check()


def test_ts_infer_on_an_object_says_so_in_one_line(
    maker_path: Path, ts_infer: Path, tmp_path: Path
) -> None:
    torch.save(torch.ones(2), tmp_path / "x.pt")
    code, _, stderr = run_cli(ts_infer, maker_path, "--input", tmp_path / "x.pt", "--json")
    assert (code, stderr) == (
        1,
        "ts-infer: error: forward() returned a Pair object (an instance of a TorchScript class), "
        "which ts-infer cannot show: return its tensors instead, or read it through the Python "
        "API (tsnative.ScriptObject)\n",
    )
    out = tmp_path / "out.pt"
    code, _, stderr = run_cli(
        ts_infer, maker_path, "--input", tmp_path / "x.pt", "--save-output", out
    )
    assert code == 1
    assert stderr.startswith("ts-infer: error: cannot save the output: it holds a Pair object")
    assert len(stderr.splitlines()) == 1
    assert not out.exists()
