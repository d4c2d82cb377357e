"""The runtimes tsnative is measured against: eager, torch.jit, ONNX Runtime, OpenVINO, and
for the int8 models ONNX Runtime's quantize_static and OpenVINO's NNCF int8."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import tsnative

from .common import Settings, first_line, log
from .measure import Runner
from .models import Case, call_with_reset

# Without VNNI, u8 x s8 products are added in pairs into 16 bits, which 8-bit activations
# overflow: ONNX Runtime's documentation says to reduce the range there, as tsnative's int8 does.
REDUCE_RANGE = not tsnative.cpu_has_vnni()


def _ort_session(path: Path, settings: Settings) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spinning = "1" if settings.ort_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(
    case: Case, path: Path, settings: Settings, name: str = "onnxruntime fp32", **row: Any
) -> Runner:
    start = time.perf_counter_ns()
    session = _ort_session(path, settings)
    feed = case.model.feed(case.inputs, [arg.name for arg in session.get_inputs()])
    setup_ms = (time.perf_counter_ns() - start) / 1e6
    outputs = list(case.model.onnx_outputs) or None
    return Runner(name, lambda: session.run(outputs, feed), True, setup_ms, **row)


def ort_int8_runner(case: Case, path: Path, settings: Settings, work: Path) -> Runner:
    """ONNX Runtime's post-training static quantization of the same file (QDQ, weights per
    channel, calibrated on the case's calibration batches), after its own pre-processing."""
    from onnxruntime import quantization

    start = time.perf_counter()
    prepared, skipped = work / f"{path.stem}-preprocessed.onnx", ""
    try:
        with _quiet():
            quantization.quant_pre_process(str(path), str(prepared))
    except Exception as error:  # its symbolic shape inference fails on some graphs
        prepared = path
        skipped = f", without pre-processing ({type(error).__name__}: {first_line(str(error))})"
    names = [arg.name for arg in _ort_session(prepared, settings).get_inputs()]
    feeds = iter([case.model.feed(batch, names) for batch in case.calibration()])

    class Calibration(quantization.CalibrationDataReader):
        def get_next(self) -> dict[str, Any] | None:
            return next(feeds, None)

    quantized = work / f"{path.stem}-int8.onnx"
    with _quiet():
        quantization.quantize_static(
            str(prepared),
            str(quantized),
            Calibration(),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=REDUCE_RANGE,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
        )
    bits = ", 7-bit (reduce_range: no VNNI)" if REDUCE_RANGE else ""
    seconds = time.perf_counter() - start
    note = f"quantize_static (QDQ, per channel{bits}) in {seconds:.0f} s{skipped}"
    return ort_runner(
        case, quantized, settings, "onnxruntime int8", quantized=True, optimization=note
    )


def _openvino_runner(
    case: Case, model: Any, settings: Settings, name: str, hint: str | None, **row: Any
) -> Runner:
    """OpenVINO's CPU plugin compiling `model` (a path or an ov.Model), latency mode, at the
    inference precision `hint` (None: its default)."""
    import openvino as ov

    def select(results: Any) -> list[Any]:
        names = case.model.onnx_outputs
        return [results[name] for name in names] if names else list(results.values())

    start = time.perf_counter_ns()
    config = {"INFERENCE_NUM_THREADS": settings.threads, "PERFORMANCE_HINT": "LATENCY"}
    if hint is not None:
        config["INFERENCE_PRECISION_HINT"] = hint
    compiled = ov.Core().compile_model(
        model if isinstance(model, ov.Model) else str(model), "CPU", config
    )
    element_type = compiled.get_property("INFERENCE_PRECISION_HINT")
    precision = element_type.to_string() if hasattr(element_type, "to_string") else "?"
    request = compiled.create_infer_request()
    feed = case.model.feed(case.inputs, [port.get_any_name() for port in compiled.inputs])
    setup_ms = (time.perf_counter_ns() - start) / 1e6
    row.setdefault("reduced_precision", precision != "f32")
    note = f"{row.pop('optimization', '')}inference precision {precision}"
    return Runner(
        name,
        lambda: select(request.infer(feed)),
        True,
        setup_ms,
        optimization=note,
        **row,
    )


def openvino_runners(case: Case, path: Path, settings: Settings) -> list[Runner]:
    """OpenVINO's CPU plugin on the same ONNX file: in float32, and at its default precision
    (bfloat16 where the CPU computes it natively: AVX512-BF16 or AMX), latency mode."""
    return [
        _openvino_runner(case, path, settings, "openvino fp32", "f32"),
        _openvino_runner(case, path, settings, "openvino default", None),
    ]


def nncf_int8_runner(case: Case, path: Path, settings: Settings) -> Runner:
    """OpenVINO on NNCF's post-training quantization of the same file (its default preset,
    the transformer model type for the encoders), calibrated on the case's calibration
    batches, at OpenVINO's default precision for what stays float."""
    import nncf
    import openvino as ov

    start = time.perf_counter()
    model = ov.Core().read_model(str(path))
    names = [port.get_any_name() for port in model.inputs]
    calibration = [case.model.feed(batch, names) for batch in case.calibration()]
    model_type = nncf.ModelType.TRANSFORMER if case.model.check == "cosine" else None
    with _quiet():
        nncf.set_log_level(logging.ERROR)
        quantized = nncf.quantize(
            model, nncf.Dataset(calibration), model_type=model_type, subset_size=len(calibration)
        )
    note = f"NNCF quantize in {time.perf_counter() - start:.0f} s; "
    return _openvino_runner(
        case, quantized, settings, "openvino nncf int8", None, quantized=True, optimization=note
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantizers' progress bars and notes on stdout go to stderr, with the progress."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def int8_peer_runners(case: Case, path: Path, settings: Settings, work: Path) -> list[Runner]:
    """ONNX Runtime's and NNCF's int8 of the case's ONNX file, each that worked (why not, on
    stderr: the targets then say "not measured")."""
    runners = []
    for name, make in (
        ("ONNX Runtime quantize_static", lambda: ort_int8_runner(case, path, settings, work)),
        ("NNCF", lambda: nncf_int8_runner(case, path, settings)),
    ):
        log(f"  {name}: int8 of {path.name}")
        try:
            runners.append(make())
        except Exception as error:
            reason = f"{type(error).__name__}: {first_line(str(error))}"
            log(f"  {name} failed for {case.model.name}: {reason}")
    return runners


def peer_runners(case: Case, settings: Settings, work: Path) -> tuple[list[Runner], str]:
    """Eager, torch.jit.load and ONNX Runtime; and why ONNX failed, if it did."""
    eager, inputs, reset = case.eager, case.inputs, case.model.reset or ""

    def run_eager() -> Any:
        with torch.inference_mode():
            return eager(*inputs)

    start = time.perf_counter_ns()
    scripted = torch.jit.load(str(case.script_path))
    jit_setup_ms = (time.perf_counter_ns() - start) / 1e6
    forward = call_with_reset(case.model, scripted, lambda: getattr(scripted, reset)())

    def run_jit() -> Any:
        with torch.no_grad():
            return forward(*inputs)

    runners = [
        Runner("eager (inference_mode)", run_eager, True, 0.0),
        Runner("torch.jit.load (no_grad)", run_jit, True, jit_setup_ms),
    ]
    try:
        onnx_path = case.export_onnx(work / f"{case.model.name}-b{case.batch}.onnx")
        runners.append(ort_runner(case, onnx_path, settings))
    except Exception as error:
        reason = f"{type(error).__name__}: {first_line(str(error))}"
        log(f"  ONNX export / session failed for {case.model.name}: {reason}")
        return runners, reason
    try:
        runners += openvino_runners(case, onnx_path, settings)
    except Exception as error:
        reason = f"{type(error).__name__}: {first_line(str(error))}"
        log(f"  OpenVINO failed for {case.model.name}: {reason}")
    if case.model.int8:
        runners += int8_peer_runners(case, onnx_path, settings, work)
    return runners, ""
