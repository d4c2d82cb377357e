"""Every model and tensor file a fuzzer once broke tsnative with (tests/fuzz/regressions) gets
a clear error from the release build too (or, for a valid archive with absurd metadata, loads),
without a memory bomb: exit 1 and one line from ts-infer, ModelLoadError (the peak RSS growing
under 500 MiB) or InputError from Python, in
a subprocess each (a crash is one failed test, not a dead pytest). The sanitizer build
replays the same files under ASan + UBSan (make test-sanitize)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import run_cli, run_python

REGRESSIONS = Path(__file__).parent / "fuzz" / "regressions"


def _files(harness: str) -> list[Path]:
    return sorted((REGRESSIONS / harness).iterdir())


@pytest.mark.parametrize("path", _files("model"), ids=lambda path: path.name)
def test_model_regressions_load_or_are_load_errors(path: Path, ts_infer: Path) -> None:
    """Most of these archives are corrupt (a ModelLoadError); a few are valid ones whose
    metadata once made the load itself fail (they load, with a note)."""
    result = run_python(
        "import resource, torch, tsnative\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"try:\n    model = tsnative.load({str(path)!r})\n"
        "    print('loaded:', model.optimization)\n"
        "except tsnative.ModelLoadError as e:\n    print(e)\n    model = None\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
        "try:\n    model and model(torch.ones(1, 3, 8, 8))\n    print('ran')\n"
        "except tsnative.InferenceError as e:\n    print(str(e).splitlines()[0])\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    message, growth_mib, call = result.stdout.strip().splitlines()
    # Some of these files once made LibTorch allocate 3.7 to 27 GB; refusing them costs little
    # over what importing tsnative took (1 GB with a CUDA torch's libraries).
    assert int(growth_mib) < 500, f"peak RSS grew {growth_mib} MiB during the load"
    code, _, stderr = run_cli(ts_infer, path, "--shape", "1,3,8,8", "--ones")
    if message.startswith("loaded: "):
        assert "not warmed up" in message, message
        # ts-infer fails exactly where the Python API's call on the same input fails (the
        # model's own shape error), with its message.
        if call == "ran":
            assert code == 0, stderr
        else:
            assert (code, stderr) == (1, f"ts-infer: error: {call}\n")
    else:
        assert code == 1, stderr
        assert message == stderr.removeprefix("ts-infer: error: ").strip()
    assert code == 0 or (stderr.startswith("ts-infer: error: ") and stderr.count("\n") == 1)


@pytest.mark.parametrize("path", _files("tensor_file"), ids=lambda path: path.name)
def test_tensor_file_regressions_are_input_errors(
    path: Path, ts_infer: Path, tmp_path: Path
) -> None:
    model = tmp_path / "relu.pt"
    torch.jit.script(torch.nn.ReLU()).save(str(model))
    code, _, stderr = run_cli(ts_infer, model, "--input", path)
    assert code == 1, stderr
    assert stderr.startswith(f"ts-infer: error: cannot read tensor file '{path}'")
    assert stderr.count("\n") == 1
