"""Every bad input gets an exception of the documented class whose message names the cause."""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import tsnative
from helpers import assert_outputs_equal
from models import SavedModels


def _missing(tmp_path: Path, model: Path) -> Path:
    return tmp_path / "no-such-model.pt"


def _directory(tmp_path: Path, model: Path) -> Path:
    return tmp_path


def _fifo(tmp_path: Path, model: Path) -> Path:
    path = tmp_path / "pipe.pt"
    os.mkfifo(path)  # opening it would wait for a writer forever
    return path


def _garbage(tmp_path: Path, model: Path) -> Path:
    path = tmp_path / "garbage.pt"
    path.write_bytes(bytes(range(256)) * 8)
    return path


def _truncated(tmp_path: Path, model: Path) -> Path:
    path = tmp_path / "truncated.pt"
    data = model.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _state_dict(tmp_path: Path, model: Path) -> Path:
    path = tmp_path / "state_dict.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    return path


def _newer_pytorch(tmp_path: Path, model: Path) -> Path:
    """The same archive with its `<name>/version` record rewritten to 99, all else kept."""
    path = tmp_path / "newer.pt"
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(path, "w") as target:
        records = [info.filename for info in source.infolist()]
        assert sum(name.endswith("/version") for name in records) == 1, records
        for info in source.infolist():
            data = b"99\n" if info.filename.endswith("/version") else source.read(info)
            target.writestr(info, data)
    return path


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_missing, r"cannot load '.*no-such-model\.pt': no such file"),
        (_directory, r"it is a directory, not a model file"),
        (_fifo, r"cannot load '.*pipe\.pt': it is not a regular file \(a FIFO, socket"),
        (_garbage, r"'.*garbage\.pt' is not a TorchScript archive \(not a readable zip file"),
        (_truncated, r"'.*truncated\.pt' is not a TorchScript archive .*truncated"),
        (_state_dict, r"'.*state_dict\.pt' is not a TorchScript archive.*torch\.save"),
        (_newer_pytorch, r"'.*newer\.pt' was saved by a newer PyTorch .*version 99"),
    ],
    ids=["missing", "directory", "fifo", "garbage", "truncated", "state_dict", "newer_pytorch"],
)
def test_load_errors(
    saved_models: SavedModels,
    tmp_path: Path,
    make: Callable[[Path, Path], Path],
    match: str,
) -> None:
    path = make(tmp_path, saved_models.path("doubler"))
    with pytest.raises(tsnative.ModelLoadError, match=match) as error:
        tsnative.load(path)
    assert "\n" not in str(error.value)  # one sentence, no LibTorch backtrace
    with pytest.raises(tsnative.ModelLoadError, match=match):
        tsnative.infer(path, torch.ones(1))


def test_rewritten_version_record_is_the_only_problem(
    saved_models: SavedModels, tmp_path: Path
) -> None:
    """Control for the "newer PyTorch" case: the rewrite itself keeps a loadable archive."""
    original = saved_models.path("doubler")
    copy = tmp_path / "copy.pt"
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(copy, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
    assert_outputs_equal(tsnative.infer(copy, torch.ones(2)), torch.full((2,), 2.0), exact=True)


def test_unknown_method_lists_the_existing_ones(saved_models: SavedModels) -> None:
    module = tsnative.load(saved_models.path("with_exports"))
    with pytest.raises(
        tsnative.InferenceError,
        match=r"has no method 'decode' \(it has: encode, forward, get_memory, reset_states\)",
    ):
        module.call("decode", torch.ones(1, 6))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.ones(2), torch.ones(2)), r"expected at most 1 argument\(s\) but received 2"),
        ((), r"missing value for argument 'x'"),
        (("text",), r"argument 'x' \(position 1\) must be Tensor, not str\."),
        ((1,), r"argument 'x' \(position 1\) must be Tensor, not int\."),
    ],
    ids=["too_many", "too_few", "str_for_tensor", "int_for_tensor"],
)
def test_argument_errors(saved_models: SavedModels, args: tuple[object, ...], match: str) -> None:
    module = tsnative.load(saved_models.path("doubler"))
    with pytest.raises(tsnative.ArgumentError, match=match) as error:
        module(*args)
    assert isinstance(error.value, TypeError)
    assert str(error.value).startswith("forward()")


def test_argument_errors_for_typed_arguments(saved_models: SavedModels) -> None:
    module = tsnative.load(saved_models.path("scalar_args"))
    x = torch.ones(2, 4)
    with pytest.raises(tsnative.ArgumentError, match=r"'repeat' .* must be int, not float"):
        module(x, 2.5, 0.5, "sum", True, None)
    with pytest.raises(tsnative.ArgumentError, match=r"argument 'mode' .* must be str, not int"):
        module(x, 2, 0.5, 3, True, None)
    with pytest.raises(tsnative.ArgumentError, match=r"missing value for argument 'bias'"):
        module(x, 2, 0.5, "sum", True)


@pytest.mark.parametrize(
    "kwargs",
    [{"colour": "red"}, {"bias": None, "colour": "red"}],
    ids=["instead_of_bias", "extra"],
)
def test_unknown_keyword_is_named(saved_models: SavedModels, kwargs: dict[str, object]) -> None:
    module = tsnative.load(saved_models.path("scalar_args"))
    with pytest.raises(tsnative.ArgumentError, match=r"unexpected keyword argument 'colour'"):
        module(torch.ones(2, 4), 2, 0.5, "sum", True, **kwargs)


def test_exception_raised_inside_the_model(saved_models: SavedModels) -> None:
    module = tsnative.load(saved_models.path("raiser"))
    with pytest.raises(
        tsnative.InferenceError,
        # Located in the archive's own code: tsnative does not read the debug tables that map
        # it back to the Python source (see test_corrupt_debug_tables_are_never_read).
        match=r"^forward\(\) raised ValueError: input too large: sum exceeds 100 "
        r"\[File \"code/__torch__/models\.py\", line \d+, in forward\]$",
    ) as error:
        module(torch.ones(20, 20))
    assert "\n" not in str(error.value)
    assert not isinstance(error.value, TypeError)  # not an ArgumentError


def test_exception_raised_by_the_model_language(saved_models: SavedModels) -> None:
    """scalar_args raises ValueError for an unknown mode from TorchScript code."""
    module = tsnative.load(saved_models.path("scalar_args"))
    with pytest.raises(tsnative.InferenceError, match=r"ValueError: mode must be 'sum' or 'mean'"):
        module(torch.ones(2, 4), 1, 1.0, "median", False, None)


def test_shape_error_inside_the_model(saved_models: SavedModels) -> None:
    # tsnative's part of the message, then LibTorch's own words as eager says them (which
    # change between releases: torch 2.15 prefixes "mm: ").
    with pytest.raises(RuntimeError) as eager:
        saved_models.eager("raiser")(torch.ones(2, 3))
    module = tsnative.load(saved_models.path("raiser"))
    cause = str(eager.value).splitlines()[0]
    assert "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)" in cause
    with pytest.raises(
        tsnative.InferenceError, match=r"^forward\(\) raised RuntimeError: " + re.escape(cause)
    ):
        module(torch.ones(2, 3))


def test_dtype_error_inside_the_model(saved_models: SavedModels) -> None:
    module = tsnative.load(saved_models.path("mlp_float64"))
    with pytest.raises(
        tsnative.InferenceError, match=r"must have the same dtype.*Float and Double"
    ):
        module(torch.ones(1, 12, dtype=torch.float32))


def test_the_module_still_works_after_errors(saved_models: SavedModels) -> None:
    module = tsnative.load(saved_models.path("raiser"))
    for bad in (torch.ones(20, 20), torch.ones(2, 3)):
        with pytest.raises(tsnative.InferenceError):
            module(bad)
    x = torch.eye(3) * 2
    assert_outputs_equal(module(x), torch.mm(x, x), exact=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_unavailable_cuda(saved_models: SavedModels, device: str) -> None:
    with pytest.raises(tsnative.ModelLoadError, match=rf"device '{device}' is not available"):
        tsnative.load(saved_models.path("doubler"), device=device)


@pytest.mark.parametrize(
    ("device", "match"),
    [
        ("banana", r"invalid device 'banana': expected 'cpu', 'cuda' or 'cuda:N'"),
        ("cuda:x", r"invalid device 'cuda:x'"),
        ("", r"invalid device ''"),
        ("meta", r"unsupported device 'meta': tsnative runs on 'cpu' or 'cuda'"),
    ],
)
def test_malformed_device(saved_models: SavedModels, device: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tsnative.load(saved_models.path("doubler"), device=device)
    with pytest.raises(ValueError, match=match):
        tsnative.infer(saved_models.path("doubler"), torch.ones(1), device=device)


def test_messages_name_the_file(tmp_path: Path) -> None:
    """Sanity for the regexes above: the file name is quoted as given."""
    path = tmp_path / "weird name.pt"
    with pytest.raises(tsnative.ModelLoadError, match=re.escape(f"'{path}'")):
        tsnative.load(path)


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        pytest.param(
            (np.ones((20, 30), dtype=np.float32),),
            {},
            "argument 'x' (position 1) must be Tensor, not numpy.ndarray; convert it with "
            "torch.from_numpy(array)",
            id="numpy",
        ),
        pytest.param(
            (),
            {"x": np.ones(3)},
            "argument 'x' (keyword) must be Tensor, not numpy.ndarray; convert it with "
            "torch.from_numpy(array)",
            id="numpy_keyword",
        ),
        pytest.param(
            ([1.0, 2.0],),
            {},
            "argument 'x' (position 1) must be Tensor, not list; make it a tensor with "
            "torch.tensor(...)",
            id="list",
        ),
    ],
)
def test_a_wrong_argument_type_names_the_argument_and_both_types(
    saved_models: SavedModels, args: tuple, kwargs: dict, expected: str
) -> None:
    module = tsnative.load(saved_models.path("identity"))
    with pytest.raises(tsnative.ArgumentError) as error:
        module(*args, **kwargs)
    message = str(error.value)
    assert message.startswith(f"forward() {expected}. Declaration: forward("), message
    assert len(message) < 200 and "\n" not in message  # not the array, not pybind11's details


def test_a_str_where_an_int_is_expected(saved_models: SavedModels) -> None:
    module = tsnative.load(saved_models.path("scalar_args"))
    with pytest.raises(tsnative.ArgumentError) as error:
        module(torch.ones(2, 4), "1", 1.0, "sum", False, None)
    message = str(error.value)
    assert "must be int, not str." in message and "PYBIND11" not in message, message
