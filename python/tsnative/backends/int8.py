"""The int8 level of AOTInductor packages: post-training static quantization through PyTorch 2
export quantization (PT2E) with torchao's x86 Inductor quantizer, which AOTInductor's freezing
passes lower to oneDNN's int8 convolutions and matrix products (qconv, qlinear).

Activations are quantized per tensor, from the ranges the calibration batches show; weights per
output channel. The quantizer's module also registers the Inductor passes that do the lowering:
without them the package would run float32 kernels between quantize and dequantize steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .. import _C
from .._extras import install_hint
from . import WriteFailure
from ._quiet import quiet
from ._torch_export import at_batch, cause, exported, stage

SCHEME = (
    "PT2E static quantization (x86 Inductor quantizer: activations per tensor, weights per channel)"
)


def quantized_program(
    model: torch.nn.Module,
    example: tuple[Any, ...],
    calibration: Sequence[tuple[Any, ...]],
    keep_float: Sequence[str],
    dynamic_batch: bool,
    progress: bool | None,
    name: str,
) -> tuple[torch.export.ExportedProgram, str]:
    """The int8 model as an exported program for AOTInductor to compile (with freezing), and
    how it was quantized, in a line, for the package's metadata. The submodules named in
    `keep_float` are not quantized."""
    # Without VNNI, oneDNN adds u8 x s8 products in pairs into 16 bits, which 8-bit activations
    # overflow (a trained digits classifier kept 13% of its top-1 answers): 7 bits do not.
    reduce_range = not _C.cpu_has_vnni()
    prepare_pt2e, convert_pt2e, quantizer = _torchao(reduce_range)
    for module_name in keep_float:
        quantizer.set_module_name_qconfig(module_name, None)  # None: left as it is
    with stage(progress, f"int8: torch.export for quantization: {name}"):
        captured = _captured(model, example, dynamic_batch)
    graph_module = captured.module()
    # An output the model computes and drops (BertModel's pooler under a mean-pooling head)
    # leaves the quantizer a linear + tanh pattern with no output, on which it fails.
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    _expose_linear_layers(graph_module)
    try:
        with quiet():
            prepared = prepare_pt2e(graph_module, quantizer)
    except Exception as error:
        raise WriteFailure(
            f"the int8 quantizer cannot annotate the model: {cause(error)}"
        ) from None
    with stage(progress, f"int8: calibrating on {len(calibration)} batches"), torch.no_grad():
        for number, batch in enumerate(calibration):
            try:
                prepared(*batch)
            except Exception as error:
                raise WriteFailure(
                    f"calibration batch #{number + 1} does not run: {cause(error)}"
                ) from None
    with quiet():
        converted = convert_pt2e(prepared)
    layers = _int8_weight_layers(converted)
    if layers == 0:
        raise WriteFailure(
            "the int8 quantizer found no convolution or linear layer to quantize in this model "
            "(an int8 package of it would run float32 throughout); export it without quantize="
        )
    program = exported(converted, example, dynamic_batch)
    bits = ", 7-bit activations (this CPU has no VNNI)" if reduce_range else ""
    kept = f", {len(keep_float)} submodules kept in float32" if keep_float else ""
    shapes = [list(value.shape) for value in example]
    return program, (
        f"int8: {SCHEME}{bits}, {layers} layers' weights in int8{kept}, calibrated on "
        f"{len(calibration)} batches, for inputs {shapes}"
    )


def regrouped(calibration: Sequence[tuple[Any, ...]], batch: int) -> tuple[tuple[Any, ...], ...]:
    """The calibration batches' rows in batches of `batch` rows (the model compiled for that
    batch alone calibrates on the same data); rows repeated where there are fewer, and the
    last rows that fill no whole batch left out."""
    columns = [torch.cat(values) for values in zip(*calibration, strict=True)]
    rows = columns[0].shape[0]
    return tuple(
        at_batch(tuple(column[start : start + batch] for column in columns), batch)
        for start in range(0, max(rows - batch, 0) + 1, batch)
    )


def _expose_linear_layers(graph_module: torch.fx.GraphModule) -> None:
    """Makes every linear layer with a constant weight one the quantizer annotates.

    The x86 quantizer finds linear layers by the source each node was traced from
    (nn.Linear or F.linear): the projections inside nn.MultiheadAttention come from
    `multi_head_attention_forward` and stayed float32, half of nn.TransformerEncoder's matrix
    products (and a non-strict capture records no source at all). Each such node is given
    F.linear as its own source, in a partition of its own."""
    wanted = (torch.nn.Linear, torch.nn.functional.linear)
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or node.target != torch.ops.aten.linear.default:
            continue
        weight = node.args[1]
        if not isinstance(weight, torch.fx.Node) or weight.op != "get_attr":
            continue
        source = node.meta.get("source_fn_stack")
        if source and source[-1][1] in wanted:
            continue
        node.meta["source_fn_stack"] = [(node.name, torch.nn.functional.linear)]


def _int8_weight_layers(converted: torch.fx.GraphModule) -> int:
    """The layers whose weights were quantized: one per-channel dequantize each (weights are
    quantized per output channel; activations per tensor)."""
    return sum(
        node.op == "call_function" and "dequantize_per_channel" in str(node.target)
        for node in converted.graph.nodes
    )


def _captured(
    model: torch.nn.Module, example: tuple[Any, ...], dynamic_batch: bool
) -> torch.export.ExportedProgram:
    """Strict export first: non-strict export names a module called twice (ResNet's shared
    ReLU) as one source, which the quantizer refuses ("more than one output node"); strict
    export cannot capture some Python, and non-strict then may still do."""
    # nn.TransformerEncoder (and MultiheadAttention) in eval run one fused kernel per layer,
    # which hides their linear layers from the quantizer: captured without that fast path.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        try:
            return exported(model, example, dynamic_batch, strict=True)
        except WriteFailure:
            return exported(model, example, dynamic_batch, strict=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _torchao(reduce_range: bool) -> tuple[Any, Any, Any]:
    """prepare_pt2e, convert_pt2e and the default x86 Inductor quantizer (torchao's; the torch
    tsnative supports no longer ships torch.ao's), activations in 7 bits with reduce_range."""
    try:
        with quiet():  # torchao's import logs about kernels for GPUs this build has not
            from torchao.quantization.pt2e import quantize_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as error:
        raise WriteFailure(
            f"quantize='int8' needs torchao ({error}): {install_hint('int8')}"
        ) from None
    quantizer = x86.X86InductorQuantizer()
    config = x86.get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
    quantizer.set_global(config)
    return quantize_pt2e.prepare_pt2e, quantize_pt2e.convert_pt2e, quantizer
