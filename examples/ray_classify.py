"""Classify the digits demo's held-out PNGs on Ray with the native predictor.

    .venv/bin/python examples/ray_classify.py            # a local Ray, started here
    RAY_ADDRESS=auto .venv/bin/python examples/ray_classify.py   # a running cluster

Uses `make demo`'s exported model and PNGs (build/demo/, made first if missing) and writes
the predictions as Parquet to build/demo/predictions/. On a cluster, every node needs
tsnative (the `ray` extra), the same torch, and the files at the same path.
"""

from __future__ import annotations

import sys

import demo
import pyarrow.parquet
import tsnative.ray


def main() -> int:
    model, images = demo.OUT_DIR / "digits.pt", demo.OUT_DIR / "heldout"
    if not model.exists() or not images.is_dir():
        demo.main()
    output = demo.OUT_DIR / "predictions"
    tsnative.ray.classify(model, images, output=output, overwrite=True, k=1, batch_size=64)
    rows = pyarrow.parquet.read_table(output).to_pylist()
    failed = [row for row in rows if row["error"] is not None]
    print(f"classified {len(rows) - len(failed)} of {len(rows)} images; predictions in {output}")
    for row in sorted(rows, key=lambda row: row["path"])[:3]:
        print(f"  {row['path']}: {row['labels'][0]} ({100 * row['probabilities'][0]:.1f}%)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
