"""The choice cache: a second load of the same model for inputs of the same shapes builds and
warms up only the variant the first one chose, in this process or the next, and says so; a
changed model, other shapes or a cache that cannot be written change nothing but the speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import tsnative
from helpers import OPTIMIZED_TOLERANCES, assert_outputs_equal, run_cli
from models import SavedModels

NAME = "cnn_bn_dropout"


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "choices").glob("*.json")) if (cache / "choices").is_dir() else []


def _variant(report: str) -> str:
    return report.split(" [")[0]


def test_a_second_load_skips_the_timing(saved_models: SavedModels, tmp_path: Path) -> None:
    path, inputs = saved_models.path(NAME), saved_models.inputs(NAME, "b4")
    first = tsnative.load(path, optimize="exact", warmup_inputs=inputs, cache_dir=tmp_path)
    assert "[timed on the warm-up input: " in first.optimization
    (entry,) = _entries(tmp_path)
    remembered = json.loads(entry.read_text())
    assert remembered["variant"] == _variant(first.optimization)
    second = tsnative.load(path, optimize="exact", warmup_inputs=inputs, cache_dir=tmp_path)
    assert second.optimization.startswith(
        f"{remembered['variant']} [remembered in {tmp_path}: timed on the warm-up input: "
    ), second.optimization
    expected = saved_models.eager_output(NAME, "b4")
    assert_outputs_equal(second(*inputs), expected, exact=False, tolerances=OPTIMIZED_TOLERANCES)
    # Other shapes, another level: chosen afresh, remembered beside it.
    other = saved_models.inputs(NAME, "b1")
    assert (
        "[timed on"
        in tsnative.load(
            path, optimize="exact", warmup_inputs=other, cache_dir=tmp_path
        ).optimization
    )
    assert (
        "[timed on"
        in tsnative.load(
            path, optimize="bf16", warmup_inputs=inputs, cache_dir=tmp_path
        ).optimization
    )
    assert len(_entries(tmp_path)) == 3


def test_a_remembered_saved_module_is_said_to_be_remembered(
    saved_models: SavedModels, tmp_path: Path
) -> None:
    """The saved module can win the timing (small models); remembered, it is the only candidate
    built, and still reported as remembered."""
    path, inputs = saved_models.path(NAME), saved_models.inputs(NAME, "b1")
    tsnative.load(path, optimize="exact", warmup_inputs=inputs, cache_dir=tmp_path)
    (entry,) = _entries(tmp_path)
    remembered = json.loads(entry.read_text())
    entry.write_text(json.dumps({**remembered, "variant": "none (as saved)"}))
    module = tsnative.load(path, optimize="exact", warmup_inputs=inputs, cache_dir=tmp_path)
    assert module.optimization.startswith(f"none (as saved) [remembered in {tmp_path}: ")
    assert len(module.named_parameters()) > 0  # the saved module itself: its weights readable


def test_the_first_call_uses_and_fills_the_cache(saved_models: SavedModels, tmp_path: Path) -> None:
    path, inputs = saved_models.path(NAME), saved_models.inputs(NAME, "b4")
    first = tsnative.load(path, optimize="exact", cache_dir=tmp_path)
    first(*inputs)
    assert "[timed on the first call: " in first.optimization
    assert len(_entries(tmp_path)) == 1
    second = tsnative.load(path, optimize="exact", cache_dir=tmp_path)
    second(*inputs)
    assert f"[remembered in {tmp_path}: timed on the first call: " in second.optimization
    assert _variant(second.optimization) == _variant(first.optimization)


def test_a_changed_model_is_chosen_afresh(tmp_path: Path) -> None:
    path, cache, x = tmp_path / "m.pt", tmp_path / "cache", (torch.rand(2, 8),)
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.jit.script(torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()).save(str(path))
        report = tsnative.load(path, optimize="exact", warmup_inputs=x, cache_dir=cache)
        assert "[timed on the warm-up input: " in report.optimization  # new bytes, new key
    assert len(_entries(cache)) == 2


def test_a_corrupt_entry_is_chosen_afresh_and_rewritten(
    saved_models: SavedModels, tmp_path: Path
) -> None:
    path, inputs = saved_models.path(NAME), saved_models.inputs(NAME, "b1")
    tsnative.load(path, optimize="exact", warmup_inputs=inputs, cache_dir=tmp_path)
    (entry,) = _entries(tmp_path)
    for text in ("", "{not json", json.dumps({"key": "another", "variant": "x", "timings": ""})):
        entry.write_text(text)
        report = tsnative.load(path, optimize="exact", warmup_inputs=inputs, cache_dir=tmp_path)
        assert "[timed on the warm-up input: " in report.optimization
        assert json.loads(entry.read_text())["variant"] == _variant(report.optimization)


def test_a_cache_that_cannot_be_written_is_noted_not_fatal(
    saved_models: SavedModels, tmp_path: Path
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    path, inputs = saved_models.path(NAME), saved_models.inputs(NAME, "b1")
    module = tsnative.load(path, optimize="exact", warmup_inputs=inputs, cache_dir=blocker / "c")
    assert "the choice is not remembered: cannot create " in module.optimization
    assert_outputs_equal(
        module(*inputs),
        saved_models.eager_output(NAME, "b1"),
        exact=False,
        tolerances=OPTIMIZED_TOLERANCES,
    )


@pytest.mark.parametrize(
    ("variable", "argument", "folder"),
    [
        ("TSNATIVE_CACHE_DIR", "", "."),
        ("XDG_CACHE_HOME", "", "tsnative"),
        ("HOME", "", ".cache/tsnative"),
        ("TSNATIVE_CACHE_DIR", ", cache_dir=False", None),  # False: nothing remembered
    ],
)
def test_the_default_cache_follows_the_environment(
    saved_models: SavedModels, tmp_path: Path, variable: str, argument: str, folder: str | None
) -> None:
    code = (
        "import torch, tsnative\n"
        f"tsnative.load({str(saved_models.path(NAME))!r}, optimize='exact',"
        f" warmup_inputs=(torch.rand(1, 3, 16, 16),){argument})"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TSNATIVE_CACHE_DIR", "XDG_CACHE_HOME")}
    env[variable] = str(tmp_path)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.json"))
    assert len(written) == (0 if folder is None else 1), written
    if folder is not None:
        assert written[0].parent == Path(folder) / "choices"


def test_threads_loading_at_once_all_get_a_working_model(
    saved_models: SavedModels, tmp_path: Path
) -> None:
    path, inputs = saved_models.path(NAME), saved_models.inputs(NAME, "b1")
    expected = saved_models.eager_output(NAME, "b1")
    failures: list[BaseException] = []

    def load_and_run() -> None:
        try:
            module = tsnative.load(path, optimize="exact", warmup_inputs=inputs, cache_dir=tmp_path)
            assert_outputs_equal(
                module(*inputs), expected, exact=False, tolerances=OPTIMIZED_TOLERANCES
            )
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=load_and_run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    (entry,) = _entries(tmp_path)
    assert json.loads(entry.read_text())["variant"]


def test_ts_infer_remembers_with_cache_dir(
    saved_models: SavedModels, tmp_path: Path, ts_infer: Path
) -> None:
    args = (saved_models.path(NAME), "--shape", "1", "3", "16", "16", "--optimize", "exact")
    reports = []
    for _ in range(2):
        code, stdout, stderr = run_cli(ts_infer, *args, "--json", "--cache-dir", tmp_path)
        assert code == 0, stderr
        reports.append(json.loads(stdout)["optimization"])
    assert "[timed on the warm-up input: " in reports[0]
    assert f"[remembered in {tmp_path}: " in reports[1]
    code, stdout, _ = run_cli(ts_infer, *args, "--json", "--cache-dir", "")
    assert code == 0 and "[timed on the warm-up input: " in json.loads(stdout)["optimization"]


def test_optimize_none_never_touches_the_cache(saved_models: SavedModels, tmp_path: Path) -> None:
    path, inputs = saved_models.path(NAME), saved_models.inputs(NAME, "b1")
    tsnative.load(path, optimize="none", warmup_inputs=inputs, cache_dir=tmp_path)
    assert not (tmp_path / "choices").exists()
