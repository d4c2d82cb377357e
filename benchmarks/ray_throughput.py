"""Images per second classifying a folder on a local Ray instance (issue 14), against
tsnative.classify in one process, in one interleaved run.

    .venv/bin/python benchmarks/ray_throughput.py [--images 1000] [--rounds 2]

The model: ResNet-18 (random weights, examples/resnet18.py) exported with 112x112
preprocessing; the images: the 64x64 PNGs of benchmarks/folder_memory.py. Configurations:
tsnative.classify with all cores as intra-op threads; tsnative.ray with 1 actor x all
threads, and with one actor per core x 1 thread. Ray's wall time counts what a user waits
for, the actors' start and model loads included; Ray itself is started once, before.
Printed as images/s, and Ray's as a ratio to the in-process run (its overhead, or its gain).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import ray
import torch
import tsnative
import tsnative.ray
from bench.common import ROOT, log
from folder_memory import write_images

sys.path.insert(0, str(ROOT / "examples"))
from resnet18 import resnet18


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    work = ROOT / "build" / "bench"
    folder = work / "folder"
    write_images(folder, args.images)
    paths = sorted(folder.glob("*.png"))[: args.images]
    model = work / "ray_resnet18.pt"
    tsnative.export(
        resnet18(num_classes=10).eval(),
        torch.rand(1, 3, 112, 112),
        model,
        labels=[f"class {i}" for i in range(10)],
        preprocess={"resize": 128, "crop": 112},
    )
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False

    def in_process() -> None:
        tsnative.set_num_threads(cores)
        tsnative.classify(model, paths, batch_size=32, progress=False)

    def on_ray(actors: int, threads: int):
        def job() -> None:
            dataset = tsnative.ray.classify(
                model, paths, batch_size=32, concurrency=actors, threads_per_actor=threads
            )
            assert dataset.count() == len(paths)

        return job

    configurations = {
        f"tsnative.classify, {cores} threads": in_process,
        f"tsnative.ray, 1 actor x {cores} threads": on_ray(1, cores),
        f"tsnative.ray, {cores} actors x 1 thread": on_ray(cores, 1),
    }
    seconds: dict[str, list[float]] = {name: [] for name in configurations}
    for round_ in range(args.rounds):
        for name, job in configurations.items():
            start = time.perf_counter()
            job()
            seconds[name].append(time.perf_counter() - start)
            log(f"ray throughput: round {round_ + 1}, {name}: {seconds[name][-1]:.1f} s")
    ray.shutdown()
    print(
        f"Classifying {len(paths)} PNGs with ResNet-18 at 112x112, {cores} cores, best of "
        f"{args.rounds} interleaved rounds"
    )
    baseline = len(paths) / min(seconds[next(iter(configurations))])
    for name in configurations:
        rate = len(paths) / min(seconds[name])
        print(f"  {name:<40} {rate:7.1f} images/s  {rate / baseline:5.2f}x in-process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
