"""Classify every JPEG / PNG in a folder from Python, through the native pipeline.

    python examples/classify_folder.py MODEL FOLDER [--k 3] [--batch-size 32]

MODEL is a file written by tsnative.export (its labels and preprocessing are inside); after
`make demo`, try `build/demo/digits.pt build/demo/heldout`. A tqdm bar shows progress on a
terminal; unreadable files are listed at the end instead of stopping the run.
"""

from __future__ import annotations

import argparse
from collections import Counter

import tsnative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("folder")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    results = tsnative.classify(args.model, args.folder, k=args.k, batch_size=args.batch_size)
    classified = [result for result in results if result.error is None]
    for result in classified[:10]:
        guesses = ", ".join(f"{p.label or p.index} {p.probability:.1%}" for p in result.predictions)
        print(f"{result.path}: {guesses}")
    if len(classified) > 10:
        print(f"... and {len(classified) - 10} more")
    counts = Counter(result.top.label or str(result.top.index) for result in classified)
    print("\nTop-1 counts:", ", ".join(f"{label} {n}" for label, n in counts.most_common()))
    for result in results:
        if result.error is not None:
            print(f"skipped: {result.error}")


if __name__ == "__main__":
    main()
