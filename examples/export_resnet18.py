"""The deployment recipe's story: script a ResNet-18, check it, save it, run it natively.

    python examples/export_resnet18.py

(torchvision's ResNet-18 when torchvision imports, else the same architecture from
resnet18.py; random weights, since nothing is downloaded.) It is run three ways:

1. eager PyTorch (the reference), 2. tsnative from Python, 3. the standalone `ts-infer`
binary (no Python inside) — and check that all three agree on the top-5 classes.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import torch
import tsnative
from resnet18 import resnet18

OUT_DIR = Path(__file__).resolve().parent.parent / "build" / "examples"


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    model_path = OUT_DIR / "resnet18.pt"

    model = resnet18()
    # tsnative.export scripts it, checks the saved file against eager, and stores the ImageNet
    # labels and preprocessing inside, so `ts-infer resnet18.pt photo.jpg` prints class names.
    tsnative.export(
        model,
        torch.rand(1, 3, 224, 224),
        model_path,
        method="script",
        labels="imagenet",
        preprocess="imagenet",
    )
    print(f"Exported ResNet-18 (random weights, seeded) to {model_path}")

    image = torch.ones(1, 3, 224, 224)  # what `ts-infer --ones` feeds the model
    with torch.no_grad():
        eager_top5 = torch.softmax(model(image), dim=1).topk(5).indices[0].tolist()
    print(f"eager PyTorch top-5:  {eager_top5}")

    native = tsnative.load(model_path)
    start = time.perf_counter()
    _probabilities, indices = native.topk(image, k=5)
    elapsed_ms = 1000 * (time.perf_counter() - start)
    print(f"tsnative top-5:       {indices[0].tolist()}  ({elapsed_ms:.1f} ms, first call)")

    ts_infer = Path(sysconfig.get_path("scripts")) / "ts-infer"
    print(f"\n$ ts-infer {model_path.name} --ones")
    result = subprocess.run(
        [str(ts_infer), str(model_path), "--ones"], capture_output=True, text=True, check=False
    )
    print(result.stdout + result.stderr, end="")
    names = tsnative.load(model_path).labels
    cli_top5 = [
        names.index(line.strip().rsplit(": ", 1)[0])
        for line in result.stdout.splitlines()
        if "%" in line
    ]

    agree = eager_top5 == indices[0].tolist() == cli_top5
    print(f"\nTop-5 identical across eager, tsnative and ts-infer: {agree}")
    return 0 if agree and result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
