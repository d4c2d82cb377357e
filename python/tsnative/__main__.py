"""python -m tsnative compare: tsnative.compare from a shell, for an eager model found by its
import path and inputs saved with torch.save (optionally the files already exported)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

import torch

from . import _C
from .compare import FORMATS, LEVELS, compare


def _eager_model(spec: str) -> torch.nn.Module:
    """'package.module:name': a module instance, or a callable that returns one."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"the model is 'package.module:name', not {spec!r}")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    model = found if isinstance(found, torch.nn.Module) else found()
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{spec} gave a {type(model).__name__}, not a torch.nn.Module")
    return model


def _load_calibration(path: str) -> list[Any]:
    batches = torch.load(path, weights_only=True)
    if not isinstance(batches, (list, tuple)) or not batches:
        raise ValueError(
            f"--calibration {path} holds a {type(batches).__name__}, not a list of batches "
            "(torch.save([batch, ...]))"
        )
    return list(batches)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tsnative")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "compare",
        help="eager vs TorchScript (each optimize level) vs AOTInductor vs ONNX Runtime on the "
        "same inputs",
        description="Runs the eager model and each deployment format on the same inputs and "
        "prints how close each is to eager, how fast, and the fastest within tolerance.",
    )
    command.add_argument("model", help="the eager model: package.module:name (instance/factory)")
    command.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="FILE",
        help="a tensor file (torch.save) per forward argument, in order",
    )
    command.add_argument("--pt", metavar="FILE", help="a TorchScript file to compare (not export)")
    command.add_argument("--pt2", metavar="FILE", help="an AOTInductor package to compare")
    command.add_argument("--onnx", metavar="FILE", help="an ONNX file to compare (not export)")
    command.add_argument(
        "--calibration",
        metavar="FILE",
        help="a list of batches (torch.save; each a tensor, or a tuple of one per forward "
        "argument, shaped like the inputs): adds an int8 AOTInductor package calibrated on "
        "them ('aoti int8'; needs the int8 extra)",
    )
    command.add_argument(
        "--static",
        action="store_true",
        help="adds an AOTInductor package compiled for the inputs' shapes alone ('aoti static': "
        "whether static_batches= pays for this model at this batch)",
    )
    command.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    command.add_argument("--levels", nargs="+", choices=LEVELS, default=list(LEVELS))
    command.add_argument("--rounds", type=int, default=20, help="timed calls per runner")
    command.add_argument("-k", "--topk", type=int, default=5, help="k of the top-k agreement")
    command.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        model = _eager_model(args.model)
        inputs = tuple(torch.load(path, weights_only=True) for path in args.input)
        files = {
            name: path
            for name, path in (
                ("torchscript", args.pt),
                ("aoti", args.pt2),
                ("onnx", args.onnx),
            )
        }
        report = compare(
            model,
            inputs,
            formats=args.formats,
            levels=args.levels,
            files={name: path for name, path in files.items() if path},
            k=args.topk,
            rounds=args.rounds,
            calibration=_load_calibration(args.calibration) if args.calibration else None,
            static=args.static,
        )
    except (ImportError, AttributeError, ValueError, OSError, _C.InferenceError) as error:
        print(f"python -m tsnative compare: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if args.json:
        best = report.fastest
        data = {**dataclasses.asdict(report), "fastest": best.name if best else None}
        print(json.dumps(data, indent=2))
    else:
        print(report)
    for runner in report.failed_files:  # the table shows it; the exit status must too
        print(f"python -m tsnative compare: {runner.name}: {runner.error}", file=sys.stderr)
    return 1 if report.failed_files else 0


if __name__ == "__main__":
    sys.exit(main())
