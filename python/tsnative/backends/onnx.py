"""Writing ONNX models (.onnx): torch.onnx.export (torch.export, then ONNX Script), with
tsnative's metadata in the model's metadata_props. ONNX Runtime runs them: onnx_runner.py."""

from __future__ import annotations

from typing import Any

import torch

from .. import _C
from .._extras import install_hint
from . import ExportOptions, WriteFailure, Written
from ._quiet import quiet

EXTRA = install_hint("onnx")


def write(
    model: torch.nn.Module,
    example: tuple[Any, ...],
    path: str,
    metadata: _C.Metadata,
    options: ExportOptions,
) -> Written:
    """Exports `model` with torch.onnx.export (torch.export, then ONNX Script's translation),
    its first dimension dynamic with options.dynamic_batch, the metadata in metadata_props."""
    for number, value in enumerate(example):
        if not isinstance(value, torch.Tensor):
            raise WriteFailure(
                f"an ONNX model takes tensors only, and the example's argument #{number} is "
                f"of type {type(value).__name__}"
            )
    try:
        import onnxscript  # noqa: F401  (what torch.onnx.export needs; not a torch dependency)
    except ImportError:
        raise WriteFailure(f"exporting to ONNX needs onnx and onnxscript: {EXTRA}") from None
    dynamic_shapes = None
    if options.dynamic_batch:
        batch = torch.export.Dim.DYNAMIC
        dynamic_shapes = tuple({0: batch} if value.dim() >= 1 else None for value in example)
    with torch.no_grad():
        count = len(torch.utils._pytree.tree_leaves(model(*example)))
    output_names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    try:
        with quiet():  # the exporter prints its steps and warns about missing extras
            program = torch.onnx.export(
                model,
                example,
                None,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                output_names=output_names,
            )
    except Exception as error:
        raise WriteFailure(_export_cause(error)) from None
    if options.dynamic_batch:
        _name_batch_dimension(program.model.graph)
    metadata.export_method = "torch.onnx.export"
    program.model.metadata_props[_C.METADATA_FILE] = metadata.to_json()
    program.save(path)
    return Written("ONNX")


def _name_batch_dimension(graph: Any) -> None:
    """torch.export names the dynamic batch "s77" or the like: call it "batch", everywhere the
    graph uses that symbol, so that signatures read forward(Tensor x: float32[batch, 3, ...])."""
    import onnx_ir as ir

    batch = {
        str(value.shape[0])
        for value in graph.inputs
        if value.shape is not None and len(value.shape) and not isinstance(value.shape[0], int)
    }
    values = [*graph.inputs, *graph.outputs, *(out for node in graph for out in node.outputs)]
    for value in values:
        if value.shape is not None and any(str(dim) in batch for dim in value.shape):
            value.shape = ir.Shape(
                [
                    "batch" if not isinstance(dim, int) and str(dim) in batch else dim
                    for dim in value.shape
                ]
            )


def _export_cause(error: BaseException) -> str:
    """The cause of a torch.onnx.export failure in a line, and the model's line that raised it
    (the exporter's own message opens with its next steps and links)."""
    cause = error.__cause__ or error
    text = str(cause).strip()
    first = text.splitlines()[0] if text else ""
    summary = f"{type(cause).__name__}: {first}".strip()
    lines = str(error).splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith("File ") and number + 1 < len(lines):
            summary += f" (at {line.strip()}: {lines[number + 1].strip()})"
            break
    return summary
