"""ts-infer as a user runs it: a subprocess, its stdout, stderr and exit code."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
import tsnative
from helpers import assert_outputs_equal, eager_topk, run_cli
from models import SavedModels

INDEX_LINE = re.compile(r"^\s*(\d+): (\d+\.\d\d)%$")


def _indices(stdout: str) -> list[int]:
    return [int(m.group(1)) for line in stdout.splitlines() if (m := INDEX_LINE.match(line))]


def _json(ts_infer: Path, *args: str | Path) -> dict:
    code, stdout, stderr = run_cli(ts_infer, *args, "--json")
    assert (code, stderr) == (0, ""), stderr
    return json.loads(stdout)


def _eager_top(saved_models: SavedModels, name: str, x: torch.Tensor, k: int = 5) -> list:
    with torch.no_grad():
        return eager_topk(saved_models.eager(name)(x), k)[1].tolist()


def test_default_run_is_the_tutorial_program(saved_models: SavedModels, ts_infer: Path) -> None:
    code, stdout, stderr = run_cli(ts_infer, saved_models.path("resnet18"))
    assert (code, stderr) == (0, "")
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines[:2] == ["Loading model...", "Model loaded successfully"]
    assert lines[-1] == "DONE"
    assert len(lines) == 8
    assert all(INDEX_LINE.match(line) for line in lines[2:7]), lines
    indices = _indices(stdout)
    assert len(set(indices)) == 5 and all(0 <= i < 1000 for i in indices)
    percentages = [float(line.rstrip("%").split(": ")[1]) for line in lines[2:7]]
    assert percentages == sorted(percentages, reverse=True)


def test_ones_gives_eager_top5(saved_models: SavedModels, ts_infer: Path) -> None:
    code, stdout, _ = run_cli(ts_infer, saved_models.path("resnet18"), "--ones")
    assert code == 0
    expected = _eager_top(saved_models, "resnet18", torch.ones(1, 3, 224, 224))
    assert [_indices(stdout)] == expected


def test_seed_is_libtorchs_generator(saved_models: SavedModels, ts_infer: Path) -> None:
    """--seed N draws at::rand after at::manual_seed(N): the same as torch.manual_seed(N);
    torch.rand(shape) in Python, so the eager top-5 is known; other seeds give other inputs."""
    path = saved_models.path("resnet18")
    first = _json(ts_infer, path, "--seed", "7")
    again = _json(ts_infer, path, "--seed", "7")
    other = _json(ts_infer, path, "--seed", "8")
    assert first["probabilities"] == again["probabilities"]
    assert first["indices"] == again["indices"]
    assert first["probabilities"] != other["probabilities"]
    torch.manual_seed(7)
    x = torch.rand(1, 3, 224, 224)
    assert first["indices"] == _eager_top(saved_models, "resnet18", x)


def test_shape(saved_models: SavedModels, ts_infer: Path) -> None:
    report = _json(
        ts_infer, saved_models.path("cnn_bn_dropout"), "--shape", "3,3,8,8", "--seed", "1"
    )
    torch.manual_seed(1)
    x = torch.rand(3, 3, 8, 8)
    assert report["indices"] == _eager_top(saved_models, "cnn_bn_dropout", x)
    assert len(report["indices"]) == 3


def test_text_output_of_a_batch_has_a_block_per_input(
    saved_models: SavedModels, ts_infer: Path
) -> None:
    code, stdout, _ = run_cli(
        ts_infer, saved_models.path("cnn_bn_dropout"), "--shape", "2,3,8,8", "--ones"
    )
    assert code == 0
    assert "input 0:" in stdout and "input 1:" in stdout
    expected = _eager_top(saved_models, "cnn_bn_dropout", torch.ones(2, 3, 8, 8))
    assert _indices(stdout) == expected[0] + expected[1]


@pytest.mark.parametrize("flag", ["-k", "--topk"])
def test_topk(saved_models: SavedModels, ts_infer: Path, flag: str) -> None:
    path = saved_models.path("resnet18")
    code, stdout, _ = run_cli(ts_infer, path, "--ones", flag, "3")
    assert code == 0
    expected = _eager_top(saved_models, "resnet18", torch.ones(1, 3, 224, 224), k=3)
    assert [_indices(stdout)] == expected


def test_topk_above_the_class_count_is_a_usage_error(
    saved_models: SavedModels, ts_infer: Path
) -> None:
    path = saved_models.path("cnn_bn_dropout")  # 10 classes
    code, _, stderr = run_cli(ts_infer, path, "--shape", "1,3,8,8", "-k", "50")
    assert code == 2
    assert stderr.startswith("ts-infer: top-k of 50 classes, but the output has 10"), stderr
    assert sorted(_json(ts_infer, path, "--shape", "1,3,8,8", "-k", "10")["indices"][0]) == list(
        range(10)
    )


def test_method(saved_models: SavedModels, ts_infer: Path) -> None:
    path = saved_models.path("with_exports")
    report = _json(ts_infer, path, "--method", "encode", "--shape", "2,6", "--seed", "3", "-k", "2")
    assert report["method"] == "encode"
    torch.manual_seed(3)
    x = torch.rand(2, 6)
    with torch.no_grad():
        expected = eager_topk(saved_models.eager("with_exports").encode(x), 2)[1].tolist()
    assert report["indices"] == expected


def test_threads(saved_models: SavedModels, ts_infer: Path) -> None:
    report = _json(ts_infer, saved_models.path("resnet18"), "--ones", "--threads", "1")
    assert report["indices"] == _eager_top(saved_models, "resnet18", torch.ones(1, 3, 224, 224))


def test_json_report(saved_models: SavedModels, ts_infer: Path) -> None:
    path = saved_models.path("resnet18")
    report = _json(ts_infer, path, "--shape", "2,3,224,224", "--seed", "0")
    assert set(report) == {
        "indices",
        "probabilities",
        "load_ms",
        "first_forward_ms",
        "forward_ms",
        "forward_p90_ms",
        "repeat",
        "optimization",
        "device",
        "method",
        "model",
    }
    assert report["optimization"] == "none (as saved)"
    assert report["repeat"] == 0
    assert report["forward_ms"] == report["first_forward_ms"]  # no repeats: the one call
    assert (report["device"], report["method"], report["model"]) == ("cpu", "forward", str(path))
    assert report["load_ms"] > 0 and report["forward_ms"] > 0
    assert [len(row) for row in report["indices"]] == [5, 5]
    for row in report["probabilities"]:
        assert len(row) == 5
        assert row == sorted(row, reverse=True)
        assert all(0 <= p <= 1 for p in row)
        assert sum(row) <= 1 + 1e-9  # the top 5 of 1000 classes


def test_save_output_writes_the_raw_output(
    saved_models: SavedModels, ts_infer: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.pt"
    code, _, stderr = run_cli(
        ts_infer,
        saved_models.path("cnn_bn_dropout"),
        "--shape",
        "2,3,8,8",
        "--ones",
        "--save-output",
        out,
    )
    assert (code, stderr) == (0, "")
    with torch.no_grad():
        expected = saved_models.eager("cnn_bn_dropout")(torch.ones(2, 3, 8, 8))
    assert_outputs_equal(torch.load(out), expected, exact=False)


@pytest.mark.parametrize(
    ("name", "shape", "expected_type"),
    [
        pytest.param("lstm", "1,5,8", tuple, id="tuple"),
        pytest.param("dict_out", "2,5", dict, id="dict"),
        pytest.param("list_out", "3", list, id="list"),
    ],
)
def test_saved_output_loads_with_torch_load(
    saved_models: SavedModels,
    ts_infer: Path,
    tmp_path: Path,
    name: str,
    shape: str,
    expected_type: type,
) -> None:
    out = tmp_path / "out.pt"
    code, _, stderr = run_cli(
        ts_infer, saved_models.path(name), "--shape", shape, "--ones", "--save-output", out
    )
    assert (code, stderr) == (0, "")
    # With torch.load's default weights_only=True (LibTorch's own pickler would tag lists and
    # dicts with globals that it refuses), and equal to what eager returns.
    saved = torch.load(out)
    assert type(saved) is expected_type
    with torch.no_grad():
        expected = saved_models.eager(name)(torch.ones([int(n) for n in shape.split(",")]))
    assert_outputs_equal(saved, expected, exact=False)


def test_help(ts_infer: Path) -> None:
    code, stdout, _ = run_cli(ts_infer, "--help")
    assert code == 0
    for flag in (
        "--input",
        "--shape",
        "--ones",
        "--seed",
        "--topk",
        "--device",
        "--threads",
        "--method",
        "--json",
        "--version",
    ):
        assert flag in stdout, flag


def test_version(ts_infer: Path) -> None:
    code, stdout, _ = run_cli(ts_infer, "--version")
    assert code == 0
    assert tsnative.__version__ in stdout
    assert torch.__version__.split("+")[0] in stdout  # the LibTorch it runs on


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["MODEL", "--bogus"], r"--bogus"),
        ([], r"model is required"),
        (["MODEL", "--topk", "0"], r"--topk"),
        (["MODEL", "--threads", "0"], r"--threads"),
        (["MODEL", "--input", "INPUT", "--shape", "1,3"], r"--input excludes --shape"),
        (["MODEL", "--input", "INPUT", "--seed", "1"], r"--input excludes --seed"),
        (["MODEL", "--shape", "1,x"], r"--shape"),
        (["MODEL", "--device", "banana"], r"invalid device 'banana'"),
    ],
    ids=[
        "unknown_flag",
        "no_model",
        "topk_0",
        "threads_0",
        "input_and_shape",
        "input_and_seed",
        "bad_shape",
        "bad_device",
    ],
)
def test_usage_errors_exit_2(
    saved_models: SavedModels, ts_infer: Path, tmp_path: Path, args: list[str], match: str
) -> None:
    torch.save(torch.ones(1, 3), tmp_path / "input.pt")
    replace = {"MODEL": str(saved_models.path("doubler")), "INPUT": str(tmp_path / "input.pt")}
    code, _, stderr = run_cli(ts_infer, *[replace.get(arg, arg) for arg in args])
    assert code == 2
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ts-infer: ")
    assert re.search(match, lines[0]), lines[0]


def test_topk_0_message_is_readable(saved_models: SavedModels, ts_infer: Path) -> None:
    code, _, stderr = run_cli(ts_infer, saved_models.path("doubler"), "--topk", "0")
    # Not CLI11's PositiveNumber, which states its range as a 300-digit double.
    assert (code, stderr) == (
        2,
        "ts-infer: --topk: must be at least 1, got 0 (see ts-infer --help)\n",
    )


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00not a model\xff" * 100)
    return path


def _module_file(tmp_path: Path) -> Path:
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # pickles a class: refused, not executed
    return path


@pytest.mark.parametrize(
    ("model", "extra", "match"),
    [
        ("GARBAGE", [], r"'.*garbage\.pt' is not a TorchScript archive"),
        ("MISSING", [], r"cannot load '.*missing\.pt': no such file"),
        ("doubler", ["--input", "MISSING"], r"cannot read tensor file '.*missing\.pt': no such"),
        ("doubler", ["--method", "nope"], r"has no method 'nope' \(it has: forward\)"),
        (
            "raiser",
            ["--ones", "--shape", "20,20"],
            r"forward\(\) raised ValueError: input too large: sum exceeds 100",
        ),
        ("raiser", ["--ones", "--shape", "2,3"], r"mat1 and mat2 shapes cannot be multiplied"),
        ("doubler", ["--input", "MODULE"], r"cannot read tensor file '.*module\.pt'.*Linear"),
        ("doubler", ["--input", "GARBAGE"], r"cannot read tensor file '.*garbage\.pt'"),
        ("embedding_int64", ["--input", "FLOATS"], r"indices.*Long, Int; but got .*Float"),
    ],
    ids=[
        "garbage_model",
        "missing_model",
        "missing_input",
        "unknown_method",
        "value_error",
        "shape_error",
        "pickled_module",
        "garbage_input",
        "float_token_ids",
    ],
)
def test_runtime_errors_exit_1(
    saved_models: SavedModels,
    ts_infer: Path,
    tmp_path: Path,
    model: str,
    extra: list[str],
    match: str,
) -> None:
    garbage = _garbage(tmp_path)
    torch.save(torch.arange(6).reshape(2, 3), tmp_path / "ints.pt")
    torch.save(torch.ones(1, 3), tmp_path / "floats.pt")
    replace = {
        "GARBAGE": garbage,
        "MODULE": _module_file(tmp_path),
        "INTS": tmp_path / "ints.pt",
        "FLOATS": tmp_path / "floats.pt",
        "MISSING": tmp_path / "missing.pt",
    }
    path = replace[model] if model.isupper() else saved_models.path(model)
    code, _, stderr = run_cli(ts_infer, path, *[replace.get(arg, arg) for arg in extra])
    assert code == 1
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ts-infer: error: ")
    assert re.search(match, lines[0]), lines[0]


def test_starts_without_python_environment(saved_models: SavedModels, ts_infer: Path) -> None:
    """Only PATH: no LD_LIBRARY_PATH, PYTHONPATH or virtualenv; libtorch is found by RPATH."""
    code, stdout, stderr = run_cli(
        ts_infer,
        saved_models.path("cnn_bn_dropout"),
        "--shape",
        "1,3,8,8",
        "--ones",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert (code, stderr) == (0, "")
    assert stdout.rstrip().endswith("DONE")
    assert [_indices(stdout)] == _eager_top(saved_models, "cnn_bn_dropout", torch.ones(1, 3, 8, 8))


def test_does_not_link_libpython(ts_infer: Path) -> None:
    ldd = subprocess.run(["ldd", str(ts_infer)], capture_output=True, text=True, check=True)
    assert "libtorch_cpu" in ldd.stdout
    assert "not found" not in ldd.stdout
    assert "libpython" not in ldd.stdout


@pytest.mark.skipif(torch.version.cuda is None, reason="torch is a CPU build")
def test_cuda_torch_build_keeps_the_gpu_with_the_wheels_cuda_runtime(ts_infer: Path) -> None:
    """Built against a CUDA torch, ts-infer links libtorch_cuda (so --device cuda works where
    there is a GPU), and the CUDA runtime it loads is the one of torch's own nvidia wheels,
    not a CUDA toolkit that may sit on the machine."""
    env = {"PATH": "/usr/bin:/bin"}  # what the binary finds by itself, as in the test above
    ldd = subprocess.run(
        ["ldd", str(ts_infer)], capture_output=True, text=True, check=True, env=env
    ).stdout
    libraries = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, flags=re.MULTILINE))
    site_packages = Path(torch.__file__).resolve().parent.parent
    assert site_packages in Path(libraries["libtorch_cuda.so"]).resolve().parents
    cudart = next(path for name, path in libraries.items() if name.startswith("libcudart"))
    assert site_packages in Path(cudart).resolve().parents, cudart


# --- Defaults from what the model knows; outputs that are not class scores -----------------


def _from_json(value: Any) -> Any:
    """ts-infer's JSON of a value back to tensors: {"dtype", "shape", "data"} -> a tensor."""
    if isinstance(value, dict) and set(value) == {"dtype", "shape", "data"}:
        dtype = getattr(torch, value["dtype"])
        return torch.tensor(value["data"], dtype=dtype).reshape(value["shape"])
    if isinstance(value, dict):
        return {key: _from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


def _as_lists(value: Any) -> Any:
    """Tuples as lists, as JSON has them."""
    if isinstance(value, tuple | list):
        return [_as_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_lists(item) for key, item in value.items()}
    return value


class OneProbability(torch.nn.Module):
    """silero-vad's kind of output: one probability per row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.sum(-1, keepdim=True))


@pytest.mark.parametrize(
    ("name", "args"),
    [
        pytest.param("lstm", ["--shape", "1,5,8"], id="tuple"),
        pytest.param("dict_out", ["--shape", "2,5"], id="dict"),
        pytest.param("list_out", ["--shape", "3"], id="list"),
        pytest.param("doubler", ["--input", "INTS"], id="int_tensor"),
        pytest.param("cnn_bn_dropout", ["--shape", "2,3,8,8", "--raw"], id="raw_scores"),
    ],
)
def test_an_output_that_is_not_class_scores_is_shown_as_it_is(
    saved_models: SavedModels, ts_infer: Path, tmp_path: Path, name: str, args: list[str]
) -> None:
    ints = torch.arange(6).reshape(2, 3)
    torch.save(ints, tmp_path / "ints.pt")
    args = [str(tmp_path / "ints.pt") if arg == "INTS" else arg for arg in args]
    if "--input" in args:
        x = ints
    else:
        x = torch.ones([int(n) for n in args[1].split(",")])
        args.append("--ones")
    report = _json(ts_infer, saved_models.path(name), *args)
    assert "indices" not in report
    with torch.no_grad():
        expected = saved_models.eager(name)(x)
    assert_outputs_equal(_from_json(report["output"]), _as_lists(expected), exact=False)
    # The text lines: one per tensor, named by its place, with dtype and shape.
    code, stdout, stderr = run_cli(ts_infer, saved_models.path(name), *args)
    assert (code, stderr) == (0, "")
    shown = [line for line in stdout.splitlines() if line.startswith("output")]
    leaves = torch.utils._pytree.tree_leaves(expected)
    assert len(shown) == len(leaves), stdout
    first = leaves[0]
    assert re.match(rf"^output\S*: {str(first.dtype).removeprefix('torch.')}\[", shown[0])
    assert "%" not in stdout


def test_one_probability_is_printed_not_a_softmax(ts_infer: Path, tmp_path: Path) -> None:
    path = tmp_path / "p.pt"
    tsnative.export(OneProbability(), torch.ones(1, 4), path)
    x = torch.full((1, 4), -0.25)
    torch.save(x, tmp_path / "x.pt")
    code, stdout, stderr = run_cli(ts_infer, path, "--input", tmp_path / "x.pt")
    assert (code, stderr) == (0, "")
    expected = float(OneProbability()(x))  # sigmoid(-1) = 0.268941
    assert f"output: float32[1, 1] {expected:.6g}" in stdout.splitlines(), stdout
    assert "100.00%" not in stdout


def test_the_recorded_input_shape_is_the_default(ts_infer: Path, tmp_path: Path) -> None:
    # A 32x32 CNN: the tutorial's 224x224 would not fit its linear layer.
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.Flatten(), torch.nn.Linear(4 * 15 * 15, 6)
    ).eval()
    path = tmp_path / "small.pt"
    tsnative.export(model, torch.rand(1, 3, 32, 32), path)
    report = _json(ts_infer, path, "--ones")
    with torch.no_grad():
        top = eager_topk(model(torch.ones(1, 3, 32, 32)), 5)[1].tolist()
    assert report["indices"] == top


def test_without_a_recorded_shape_the_error_says_which_flag_to_give(
    saved_models: SavedModels, ts_infer: Path
) -> None:
    # A plain torch.jit.save: no metadata, so the tutorial's 1x3x224x224, which does not fit.
    code, _, stderr = run_cli(ts_infer, saved_models.path("raiser"))
    assert code == 1
    assert stderr.endswith(
        "(ts-infer made a random 1x3x224x224 input, as the model records no input shape: give "
        "--shape or --input)\n"
    ), stderr


def test_a_method_without_arguments_gets_none(saved_models: SavedModels, ts_infer: Path) -> None:
    path = saved_models.path("with_exports")
    code, stdout, stderr = run_cli(ts_infer, path, "--method", "get_memory", "--raw")
    assert (code, stderr) == (0, "")
    expected = saved_models.eager("with_exports").get_memory()
    shown = [line for line in stdout.splitlines() if line.startswith("output: ")]
    assert shown == ["output: float32[5] " + " ".join(f"{v:.6g}" for v in expected.tolist())]
    code, stdout, stderr = run_cli(ts_infer, path, "--method", "reset_states")
    assert (code, stderr) == (0, "")
    assert "output: null" in stdout.splitlines()
