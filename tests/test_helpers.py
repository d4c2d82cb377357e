"""The comparison helper must fail where outputs differ; otherwise parity proves nothing."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers import TOLERANCES, assert_outputs_equal, eager_topk

X = torch.tensor([1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("actual", "expected"),
    [
        pytest.param(X + 1e-7, X, id="tiny_diff_exact"),
        pytest.param(X.double(), X, id="dtype"),
        pytest.param(X.reshape(1, 3), X, id="shape"),
        pytest.param([X], (X,), id="list_vs_tuple"),
        pytest.param((X,), (X, X), id="length"),
        pytest.param({"b": X}, {"a": X}, id="keys"),
        pytest.param(X, {"a": X}, id="tensor_vs_dict"),
        pytest.param(1, 1.0, id="int_vs_float"),
        pytest.param("sum", "mean", id="str"),
    ],
)
def test_exact_comparison_fails_on_any_difference(actual: Any, expected: Any) -> None:
    with pytest.raises(AssertionError):
        assert_outputs_equal(actual, expected, exact=True)


@pytest.mark.parametrize("scale", [1.0, 8.0])
@pytest.mark.parametrize("dtype", sorted(TOLERANCES, key=str))
def test_close_comparison_scales_atol_by_the_output(dtype: torch.dtype, scale: float) -> None:
    """atol is a fraction of the expected tensor's largest |value|; at an element that is 0,
    rtol adds nothing, so atol alone decides there."""
    _, atol = TOLERANCES[dtype]
    expected = torch.tensor([0.0, -scale], dtype=dtype)
    nudged = expected.clone()
    nudged[0] = atol * scale / 2
    assert_outputs_equal(nudged, expected, exact=False)
    with pytest.raises(AssertionError):
        assert_outputs_equal(nudged, expected, exact=True)
    nudged[0] = atol * scale * 2
    with pytest.raises(AssertionError, match=r"output: Tensor-likes are not close"):
        assert_outputs_equal(nudged, expected, exact=False)


def test_integers_are_always_exact() -> None:
    with pytest.raises(AssertionError):
        assert_outputs_equal(torch.tensor([1, 2]), torch.tensor([1, 3]), exact=False)


def test_nested_structures_are_walked() -> None:
    expected = {"a": (X, [X * 2]), "b": X}
    assert_outputs_equal({"a": (X.clone(), [X * 2]), "b": X.clone()}, expected, exact=True)
    with pytest.raises(AssertionError, match=r"output\['a'\]\[1\]\[0\]"):
        assert_outputs_equal({"a": (X, [X * 3]), "b": X}, expected, exact=False)


def test_eager_topk_by_hand() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0]])
    probabilities, indices = eager_topk(logits, 5)  # k clamped to 3 classes
    assert indices.tolist() == [[1, 2, 0]]
    exp = torch.tensor([1.0, torch.e**2, torch.e])
    assert_outputs_equal(probabilities[0], (exp / exp.sum())[[1, 2, 0]], exact=False)
