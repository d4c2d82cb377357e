"""Writing AOTInductor packages (.pt2): torch.export, then AOTInductor's compile and package.

The package runs in the C++ core (csrc/core/backends/aoti/), through the same Model as a
TorchScript archive; only writing one needs Python (torch.export and Inductor's compiler).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

from .. import _C
from . import ExportOptions, WriteFailure, Written, int8
from ._quiet import quiet
from ._torch_export import at_batch, cause, exported, size_oblivious, stage


def write(
    model: torch.nn.Module,
    example: tuple[Any, ...],
    path: str,
    metadata: _C.Metadata,
    options: ExportOptions,
) -> Written:
    """Exports `model` with torch.export (its first dimension dynamic with options.dynamic_batch,
    from batch 0 up, whatever the example's batch), compiles it with AOTInductor (weights frozen
    into the code) and writes the package at `path`, the metadata and forward's input shapes
    inside. Each of options.static_batches adds a model compiled for that batch alone (named
    _C.static_model_name(batch)), which the core runs for calls of that batch."""
    for number, value in enumerate(example):
        if not isinstance(value, torch.Tensor):
            raise WriteFailure(
                f"an AOTInductor package takes tensors only, and the example's argument "
                f"#{number} is of type {type(value).__name__}"
            )
    progress, name = options.progress, options.name
    if options.quantize == "int8":
        program, metadata.quantization = int8.quantized_program(
            model,
            example,
            options.calibration,
            options.keep_float,
            options.dynamic_batch,
            progress,
            name,
        )
    else:
        with stage(progress, f"torch.export: {name}"):
            program = exported(model, example, options.dynamic_batch)
    metadata.export_method = "torch._inductor.aot_compile, package_aoti"
    # name -> (program, how progress calls it)
    main = "dynamic batch" if options.dynamic_batch else "the example's batch"
    programs = {_C.PACKAGE_MODEL_NAME: (program, main)}
    for batch in options.static_batches:
        if options.quantize == "int8":  # quantized again: its graph is the example's batch's
            static, _ = int8.quantized_program(
                model,
                at_batch(example, batch),
                int8.regrouped(options.calibration, batch),
                options.keep_float,
                False,
                progress,
                f"{name} for batch {batch}",
            )
        else:
            with stage(progress, f"torch.export: {name} for batch {batch} alone"):
                static = exported(model, at_batch(example, batch), dynamic_batch=False)
        programs[_C.static_model_name(batch)] = (static, f"batch {batch}")
    # What the package is compiled with, recorded in it (beside each model's metadata).
    configs: dict[str, Any] = {"freezing": True}
    shared = {
        _C.METADATA_FILE: metadata.to_json(),
        _C.PACKAGE_CPU_FLAGS_KEY: _unrecorded_cpu_flags(),
        _C.PACKAGE_INDUCTOR_CONFIGS_KEY: json.dumps(configs, sort_keys=True),
    }
    compiled: dict[str, list[Any]] = {}
    for model_name, (each, called) in programs.items():
        entries = {**shared, _C.PACKAGE_INPUTS_KEY: json.dumps(_input_specs(each))}
        if model_name == _C.PACKAGE_MODEL_NAME and options.static_batches:
            entries[_C.PACKAGE_STATIC_BATCHES_KEY] = json.dumps(list(options.static_batches))
        which = "" if len(programs) == 1 else f" ({called})"
        with stage(progress, f"AOTInductor: compiling {name}{which} (tens of seconds)"):
            compiled[model_name] = _compiled(each, {**configs, "aot_inductor.metadata": entries})
    from torch._inductor.package import package_aoti

    try:
        package_aoti(path, compiled)
    except Exception as error:
        raise WriteFailure(f"AOTInductor failed to write the package: {cause(error)}") from None
    return Written("AOTInductor")


def _compiled(program: torch.export.ExportedProgram, configs: dict[str, Any]) -> list[Any]:
    """The files AOTInductor compiles `program` into, for package_aoti; WriteFailure if it
    cannot."""
    args, kwargs = program.example_inputs
    try:
        # Inductor freezes (folds and prepacks the weights, lowers int8 patterns to oneDNN's
        # kernels) only with autograd off: without no_grad "freezing" does nothing.
        with size_oblivious(), quiet(), torch.no_grad():
            return torch._inductor.aot_compile(
                program.module(check_guards=False),
                args,
                kwargs,
                options={**configs, "aot_inductor.package": True},
            )
    except Exception as error:
        raise WriteFailure(f"AOTInductor failed: {cause(error)}") from None


def _unrecorded_cpu_flags() -> str:
    """The CPU capabilities (cpuinfo's names) Inductor's compile flags assume and AOTI_CPU_ISA
    does not say: -mavx512bf16 where this CPU has AVX512-BF16, so that the core refuses the
    package on a CPU without it instead of dying on an unknown instruction."""
    with quiet():  # Inductor's import logs about CUDA_HOME on a CUDA torch without a GPU
        from torch._inductor import cpu_vec_isa

        isa = cpu_vec_isa.pick_vec_isa()
    has_bf16 = getattr(isa, "is_avx512_bf16_supported", None)
    return "avx512_bf16" if has_bf16 is not None and has_bf16() else ""


def _input_specs(program: torch.export.ExportedProgram) -> list[dict[str, Any]]:
    """forward's tensor arguments as the core checks them: name, dtype, and each dimension's
    size or, for a dynamic one, its range (the first dynamic size is called "batch")."""
    names: dict[str, str] = {}
    specs = []
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        value = node.meta["val"]
        shape: list[Any] = []
        for size in value.shape:
            if isinstance(size, int):
                shape.append(size)
                continue
            symbol = size.node.expr
            name = names.setdefault(str(symbol), "batch" if not names else f"dim{len(names)}")
            bounds = program.range_constraints.get(symbol)
            lower = 0 if bounds is None else int(bounds.lower)
            bounded = bounds is not None and bounds.upper.is_number and bounds.upper < sys.maxsize
            upper = int(bounds.upper) if bounded else None
            shape.append({"name": name, "min": lower, "max": upper})
        dtype = str(value.dtype).removeprefix("torch.")
        specs.append({"name": node.name, "dtype": dtype, "shape": shape})
    return specs
