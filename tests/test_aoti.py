"""AOTInductor packages (.pt2): tsnative.export to .pt2, and load / infer / Module / classify /
ts-infer on it through the C++ core, against eager PyTorch; the parity zoo as packages; bad
packages and bad calls.

Tolerance: Inductor generates its own kernels and reorders float math (fused reductions,
vectorized accumulation), so outputs are held to AOTI_TOLERANCES (1e-5 of each tensor's scale,
rtol 1e-5), as ONNX Runtime's; a package and ts-infer run the same compiled code, so they are
held to each other bit for bit.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
import tsnative
from conftest import Classifier
from helpers import assert_outputs_equal, eager_topk, run_cli
from models import TORCH_EXPORT_REFUSES, TORCH_EXPORTABLE, ZOO, SavedModels, build, export_zoo

AOTI_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-10, 1e-10),
}


@pytest.fixture(scope="module")
def aoti_zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """Each zoo model exported to a package once: its path, or torch.export's reason it cannot
    be (compiling is the slow part of this module: a package per model)."""
    return export_zoo(tmp_path_factory.mktemp("aoti"), ".pt2")


@pytest.mark.parametrize("name", TORCH_EXPORTABLE)
def test_zoo_model_as_package_matches_eager(
    aoti_zoo: dict[str, Path | str],
    saved_models: SavedModels,
    ts_infer: Path,
    tmp_path: Path,
    name: str,
) -> None:
    """Every case of every model torch.export takes, through tsnative.load, infer and ts-infer,
    with the eager model's output structure (dicts, tuples); one that does not export fails."""
    exported = aoti_zoo[name]
    for case, inputs, actual, expected in saved_models.exported_cases(name, exported, "to .pt2"):
        assert_outputs_equal(actual, expected, exact=False, tolerances=AOTI_TOLERANCES)

        args: list[str | Path] = []
        for i, value in enumerate(inputs):
            torch.save(value, tmp_path / f"{case}-input{i}.pt")
            args += ["--input", tmp_path / f"{case}-input{i}.pt"]
        out = tmp_path / f"{case}-out.pt"
        code, _, stderr = run_cli(ts_infer, exported, *args, "--save-output", out, "--json")
        assert (code, stderr) == (0, "")
        assert_outputs_equal(torch.load(out, weights_only=False), actual, exact=True)


def test_what_torch_export_refuses_says_why(aoti_zoo: dict[str, Path | str]) -> None:
    """Data-dependent control flow and non-tensor arguments: an ExportError naming the cause
    and suggesting .pt."""
    assert "torch.export failed" in aoti_zoo["my_module"]
    for name, cause in TORCH_EXPORT_REFUSES.items():
        assert isinstance(aoti_zoo[name], str), f"{name} exported: it was expected to be refused"
        assert cause in aoti_zoo[name]
        assert "export to .pt (TorchScript) instead" in aoti_zoo[name]


def test_package_carries_metadata_and_runs_any_batch(
    classifier_package: Path, tiny_classifier: Classifier
) -> None:
    with zipfile.ZipFile(classifier_package) as archive:
        assert any("/data/aotinductor/" in name for name in archive.namelist())
    module = tsnative.load(classifier_package)
    assert module.labels == tiny_classifier.labels
    assert module.preprocess == {
        key: tiny_classifier.preprocess.get(key, value) for key, value in module.preprocess.items()
    }
    assert module.signature() == "forward(Tensor x) -> Tensor"
    assert module.optimization.startswith("none: an AOTInductor package, compiled ahead of time")
    for batch in (1, 2, 5):
        x = torch.rand(batch, 3, 40, 40)
        with torch.no_grad():
            expected = tiny_classifier.eager(x)
        assert_outputs_equal(module(x), expected, exact=False, tolerances=AOTI_TOLERANCES)
        probabilities, indices = module.topk(x, k=3)
        want_p, want_i = eager_topk(expected, 3)
        assert torch.equal(indices, want_i)
        torch.testing.assert_close(probabilities, want_p, rtol=1e-5, atol=1e-6)


def test_classify_a_package_matches_eager(
    classifier_package: Path, tiny_classifier: Classifier, photo_dir: Path, ts_infer: Path
) -> None:
    """The core decodes, preprocesses, batches and ranks for a package as for TorchScript: the
    eager model on Pillow's preprocessing is the reference; ts-infer on the folder agrees."""
    from test_classify import assert_matches_eager
    from test_cli_images import expected_json, json_lines

    paths = sorted(photo_dir.iterdir())
    results = tsnative.classify(classifier_package, photo_dir, k=3, batch_size=2)
    assert_matches_eager(results, tiny_classifier, paths, k=3)
    # The same batches: Inductor's kernels for another batch size may round differently.
    code, stdout, _ = run_cli(
        ts_infer, classifier_package, photo_dir, "-k", "3", "--batch-size", "2", "--json"
    )
    assert code == 0
    assert json_lines(stdout) == expected_json(results)


def test_wrong_inputs_are_one_clear_error(classifier_package: Path, ts_infer: Path) -> None:
    """Shapes outside what was compiled, another dtype, another rank: the core checks them
    against the exported shapes before the compiled code runs (it would read out of bounds)."""
    module = tsnative.load(classifier_package)
    for bad, cause in (
        (torch.rand(2, 3, 41, 40), "dimension 2 (exported as 40) differs"),
        (torch.rand(2, 3, 40, 40, dtype=torch.float64), "its dtype differs"),
        (torch.rand(3, 40, 40), "its number of dimensions differs"),
    ):
        with pytest.raises(tsnative.ArgumentError, match="was exported as float32") as raised:
            module(bad)
        assert cause in str(raised.value)
    with pytest.raises(tsnative.ArgumentError):
        module(torch.rand(1, 3, 40, 40), torch.rand(1))
    code, _, stderr = run_cli(ts_infer, classifier_package, "--shape", "1,3,41,40")
    assert code == 1
    assert stderr.count("\n") == 1 and "exported as float32[batch, 3, 40, 40]" in stderr


def test_what_a_package_lacks_says_so(classifier_package: Path, ts_infer: Path) -> None:
    module = tsnative.load(classifier_package)
    with pytest.raises(tsnative.InferenceError, match="compiled them into its code"):
        module.named_parameters()
    with pytest.raises(AttributeError, match="methods: forward"):
        _ = module.encode
    with pytest.raises(
        ValueError, match=r"optimize level 'fast' \(optimize='fast', --optimize fast\) applies"
    ):
        tsnative.load(classifier_package, optimize="fast")
    with pytest.raises(tsnative.ModelLoadError, match="loads from a file"):
        tsnative.load(classifier_package.read_bytes())
    code, _, stderr = run_cli(ts_infer, classifier_package, "--optimize", "exact")
    assert code == 2 and stderr.count("\n") == 1 and "AOTInductor package" in stderr
    assert "--optimize exact" in stderr  # in ts-infer's terms too, not only Python's


def _with_metadata(package: Path, path: Path, **changes: str) -> Path:
    """A copy of `package` whose compiled model claims other AOTI_* metadata."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename.endswith("_metadata.json"):
                data = json.dumps({**json.loads(data), **changes}).encode()
            target.writestr(entry, data)
    return path


def test_a_package_for_another_platform_is_refused(
    classifier_package: Path, tmp_path: Path, ts_infer: Path
) -> None:
    """Checked from the package's metadata before its code is loaded: code for another device,
    machine or instruction set must not run (an unknown instruction kills the process)."""
    cuda = _with_metadata(classifier_package, tmp_path / "cuda.pt2", AOTI_DEVICE_KEY="cuda")
    with pytest.raises(tsnative.ModelLoadError, match="compiled for cuda, not cpu"):
        tsnative.load(cuda)
    arm = _with_metadata(classifier_package, tmp_path / "arm.pt2", AOTI_MACHINE="aarch64")
    with pytest.raises(tsnative.ModelLoadError, match="compiled for aarch64"):
        tsnative.load(arm)
    code, _, stderr = run_cli(ts_infer, arm, "--shape", "1,3,40,40")
    assert code == 1 and stderr.count("\n") == 1 and "compiled for aarch64" in stderr

    # An instruction set this CPU lacks, chosen from what it has (an AMX Xeon lacks none).
    has = torch._C._cpu._get_cpu_capability()
    lacking = [
        (isa, flag)
        for isa, flag in (
            ("AVX512", "avx512_f"),
            ("AVX512_VNNI", "avx512_vnni"),
            ("AMX_TILE", "amx_tile"),
        )
        if not has.get(flag)
    ]
    if not lacking:
        # Every ISA a package can name (an AMX Xeon): the refusal of each is the C++ test's
        # (test_aoti_platform.cpp, with a CPU it describes); here, a package claiming them all
        # loads and runs.
        every = "AVX512 AVX512_VNNI AMX_TILE"
        other = _with_metadata(classifier_package, tmp_path / "isa.pt2", AOTI_CPU_ISA=every)
        assert tsnative.load(other)(torch.rand(1, 3, 40, 40)).shape == (1, 5)
        return
    isa, flag = lacking[0]
    other = _with_metadata(classifier_package, tmp_path / "isa.pt2", AOTI_CPU_ISA=isa)
    with pytest.raises(tsnative.ModelLoadError, match=f"compiled for CPUs with {isa}.*{flag}"):
        tsnative.load(other)


def _package_metadata(package: Path) -> dict[str, str]:
    """The package's metadata (one copy beside its wrapper's code, one beside its kernels')."""
    with zipfile.ZipFile(package) as archive:
        names = [name for name in archive.namelist() if name.endswith("_metadata.json")]
        copies = [json.loads(archive.read(name)) for name in names]
    assert copies and all(copy == copies[0] for copy in copies)
    return copies[0]


def test_flags_the_cpu_isa_does_not_name_are_recorded_and_checked(
    classifier_package: Path, tmp_path: Path
) -> None:
    """Inductor compiles with -mavx512bf16 where the exporting CPU has AVX512-BF16 and records
    only "AVX512..." in AOTI_CPU_ISA: export records it, and a CPU without it refuses."""
    has = torch._C._cpu._get_cpu_capability()
    recorded = _package_metadata(classifier_package)[tsnative._C.PACKAGE_CPU_FLAGS_KEY]
    assert recorded == ("avx512_bf16" if has["avx512_bf16"] else "")
    # A capability no CPU has, so that the refusal runs on every CPU, AMX Xeons included.
    claimed = "tsnative_test_capability_no_cpu_has"
    claims = {tsnative._C.PACKAGE_CPU_FLAGS_KEY: f"avx2 {claimed}"}
    other = _with_metadata(classifier_package, tmp_path / "flags.pt2", **claims)
    with pytest.raises(
        tsnative.ModelLoadError, match=f"compiled for CPUs with {claimed} and this CPU lacks it"
    ):
        tsnative.load(other)


def test_a_metadata_input_too_large_to_warm_up_on_is_noted(
    classifier_package: Path, tmp_path: Path
) -> None:
    """The warm-up input made from the metadata's input_shape is a guess: one too large to make
    is not made, and optimization says so, as for a TorchScript archive."""
    metadata = json.loads(_package_metadata(classifier_package)[tsnative._C.METADATA_FILE])
    metadata["input_shape"] = [100000, 3, 1000, 1000]
    claims = {tsnative._C.METADATA_FILE: json.dumps(metadata)}
    large = _with_metadata(classifier_package, tmp_path / "large.pt2", **claims)
    optimization = tsnative.load(large).optimization
    assert optimization.startswith("none: an AOTInductor package")
    assert "; not warmed up: the metadata's input_shape [100000, 3, 1000, 1000]" in optimization


def test_corrupt_packages_are_one_clear_error(
    classifier_package: Path, tmp_path: Path, ts_infer: Path
) -> None:
    """Truncated (no zip directory: read as a TorchScript archive, which it cannot be) or with
    its compiled library damaged: a ModelLoadError naming the file, exit 1 with one line."""
    data = classifier_package.read_bytes()
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(data[: len(data) // 2])
    damaged = tmp_path / "damaged.pt2"
    with zipfile.ZipFile(classifier_package) as source, zipfile.ZipFile(damaged, "w") as target:
        for entry in source.infolist():
            content = source.read(entry)
            if entry.filename.endswith(".so"):
                content = content[:64] + bytes(len(content) - 64)
            target.writestr(entry, content)
    for bad in (truncated, damaged):
        with pytest.raises(tsnative.ModelLoadError, match=repr(str(bad))):
            tsnative.load(bad)
        code, _, stderr = run_cli(ts_infer, bad, "--shape", "1,3,40,40")
        assert code == 1 and stderr.count("\n") == 1 and str(bad) in stderr, stderr


def test_export_formats_and_static_batch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = torch.nn.Linear(4, 2).eval()
    x = torch.rand(2, 4)
    named = tsnative.export(model, x, tmp_path / "model.bin", format="aoti", progress=True)
    assert "compiling model.bin" in capsys.readouterr().err  # the seconds, while it compiles
    assert "AOTInductor" in named.optimization
    static = tsnative.export(model, x, tmp_path / "static.pt2", dynamic_batch=False)
    with pytest.raises(tsnative.ArgumentError, match=r"dimension 0 \(exported as 2\)"):
        static(torch.rand(3, 4))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.bin", "static.pt2"]


def test_a_batch_specialised_despite_the_dynamic_dimension_is_caught(tmp_path: Path) -> None:
    """nn.TransformerEncoder exported from batch 1 still bakes the 1 into its graph (the
    classifier above does not): the export's check at one more row finds it, and says what to
    do; nothing is written."""
    with pytest.raises(tsnative.ExportError, match="give an example of 2 or more rows"):
        tsnative.export(
            build("transformer"),
            ZOO["transformer"].cases["b1"](),
            tmp_path / "t.pt2",
            progress=False,
        )
    assert not list(tmp_path.iterdir())


def test_a_package_tsnative_did_not_export(tmp_path: Path, ts_infer: Path) -> None:
    """A user's own aoti_compile_and_package: no tsnative metadata, a static batch; loaded,
    run and checked against eager, and its own code checks its inputs."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    model = model.eval()
    x = torch.randn(4, 6)
    path = tmp_path / "plain.pt2"
    with torch.no_grad():
        program = torch.export.export(model, (x,))
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        expected = model(x)
    module = tsnative.load(path)
    assert (module.labels, module.preprocess) == ([], None)
    assert_outputs_equal(module(x), expected, exact=False, tolerances=AOTI_TOLERANCES)
    with pytest.raises(tsnative.InferenceError):
        module(torch.randn(4, 7))
    torch.save(x, tmp_path / "x.pt")
    code, stdout, stderr = run_cli(ts_infer, path, "--input", tmp_path / "x.pt", "--json")
    assert (code, stderr) == (0, "")
    assert json.loads(stdout)["indices"] == eager_topk(expected, 3)[1].tolist()


def test_repeat_on_a_package(
    classifier_package: Path, tiny_classifier: Classifier, ts_infer: Path, tmp_path: Path
) -> None:
    x = torch.rand(2, 3, 40, 40)
    torch.save(x, tmp_path / "x.pt")
    code, stdout, stderr = run_cli(
        ts_infer, classifier_package, "--input", tmp_path / "x.pt", "--repeat", "5", "--json"
    )
    assert (code, stderr) == (0, "")
    report = json.loads(stdout)
    assert report["repeat"] == 5
    assert 0 < report["forward_ms"] <= report["forward_p90_ms"]
    with torch.no_grad():
        expected = tiny_classifier.eager(x)
    assert report["indices"] == eager_topk(expected, 5)[1].tolist()
