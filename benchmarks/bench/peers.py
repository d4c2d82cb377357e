"""The runtimes tsnative is measured against: eager, torch.jit, ONNX Runtime, OpenVINO."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .common import Settings, first_line, log
from .measure import Runner
from .models import Case, call_with_reset


def ort_runner(case: Case, path: Path, settings: Settings) -> Runner:
    import onnxruntime as ort

    start = time.perf_counter_ns()
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spinning = "1" if settings.ort_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = case.model.feed(case.inputs, [arg.name for arg in session.get_inputs()])
    setup_ms = (time.perf_counter_ns() - start) / 1e6
    outputs = list(case.model.onnx_outputs) or None
    return Runner("onnxruntime fp32", lambda: session.run(outputs, feed), True, setup_ms)


def openvino_runners(case: Case, path: Path, settings: Settings) -> list[Runner]:
    """OpenVINO's CPU plugin on the same ONNX file: in float32, and at its default precision
    (bfloat16 where the CPU computes it natively: AVX512-BF16 or AMX), latency mode."""
    import openvino as ov

    runners = []

    def select(results: Any) -> list[Any]:
        names = case.model.onnx_outputs
        return [results[name] for name in names] if names else list(results.values())

    for name, hint in (("openvino fp32", "f32"), ("openvino default", None)):
        start = time.perf_counter_ns()
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": settings.threads, "PERFORMANCE_HINT": "LATENCY"}
        if hint is not None:
            config["INFERENCE_PRECISION_HINT"] = hint
        compiled = core.compile_model(str(path), "CPU", config)
        element_type = compiled.get_property("INFERENCE_PRECISION_HINT")
        precision = element_type.to_string() if hasattr(element_type, "to_string") else "?"
        request = compiled.create_infer_request()
        feed = case.model.feed(case.inputs, [port.get_any_name() for port in compiled.inputs])
        setup_ms = (time.perf_counter_ns() - start) / 1e6
        reduced = precision != "f32"
        runners.append(
            Runner(
                name,
                lambda request=request, feed=feed: select(request.infer(feed)),
                True,
                setup_ms,
                reduced_precision=reduced,
                optimization=f"inference precision {precision}",
            )
        )
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
    return runners, ""
