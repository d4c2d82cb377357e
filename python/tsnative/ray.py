"""Classify large image collections on a Ray cluster with the native predictor.

Ray Data spreads the files over actors; each actor loads the model once and classifies its
batches through the same C++ pipeline as ``tsnative.classify`` and ``ts-infer`` (decoding,
preprocessing, top-k in the core), so every row equals theirs. Needs the ``ray`` extra::

    pip install 'ray[data]>=2.60'

    import tsnative.ray
    tsnative.ray.classify("classifier.pt", "/shared/photos/", output="preds.parquet", k=5)

The files are read by path: on a cluster of several machines, every node must see them at the
same path (a shared filesystem) and have tsnative, the same torch and Ray installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ._extras import install_hint

try:
    import ray
    import ray.data
except ImportError:  # pragma: no cover - exercised without the extra
    raise ImportError(
        f"tsnative.ray needs Ray Data, which is not installed: {install_hint('ray')}"
    ) from None

from . import _C
from .images import Preprocessing
from .images import classify as _classify
from .module import Module, load

if TYPE_CHECKING:
    import pyarrow

PathLike = str | os.PathLike[str]


class Predictor:
    """A ``map_batches`` class: loads the model once per actor, then classifies each batch of
    rows (a ``path`` column) into ``path``, ``indices``, ``probabilities``, ``labels`` (lists,
    best first) and ``error`` (None, or why the file could not be classified)."""

    def __init__(
        self,
        model: PathLike,
        *,
        k: int | None = None,
        labels: Sequence[str] | PathLike | None = None,
        preprocess: Preprocessing | None = None,
        threads: int | None = 1,
    ) -> None:
        if threads is not None:
            _C.set_num_threads(threads)  # this actor's process only
        self._module: Module = load(model)
        self._options = {"k": k, "labels": labels, "preprocess": preprocess}

    def __call__(self, batch: pyarrow.Table) -> pyarrow.Table:
        import pyarrow

        paths = [str(path) for path in batch.column("path").to_pylist()]
        results = _classify(
            self._module, paths, batch_size=max(len(paths), 1), progress=False, **self._options
        )
        columns = {
            "path": [result.path for result in results],
            "indices": [[p.index for p in result.predictions] for result in results],
            "probabilities": [[p.probability for p in result.predictions] for result in results],
            "labels": [[p.label for p in result.predictions] for result in results],
            "error": [result.error for result in results],
        }
        return pyarrow.Table.from_pydict(columns, schema=_schema())


def _schema() -> pyarrow.Schema:
    """One schema for every batch (a batch without errors would otherwise type `error` null)."""
    import pyarrow

    return pyarrow.schema(
        [
            ("path", pyarrow.string()),
            ("indices", pyarrow.list_(pyarrow.int64())),
            ("probabilities", pyarrow.list_(pyarrow.float64())),
            ("labels", pyarrow.list_(pyarrow.string())),
            ("error", pyarrow.string()),
        ]
    )


def classify(
    model: PathLike,
    images: PathLike | Iterable[PathLike],
    *,
    output: PathLike | None = None,
    overwrite: bool = False,
    k: int | None = None,
    batch_size: int = 64,
    concurrency: int | None = None,
    threads_per_actor: int = 1,
    labels: Sequence[str] | PathLike | None = None,
    preprocess: Preprocessing | None = None,
) -> ray.data.Dataset | None:
    """Classifies image files (or every JPEG / PNG in a folder) on the Ray cluster this process
    is connected to (``ray.init()``, or ``RAY_ADDRESS``; a local one is started otherwise).

    Each of ``concurrency`` actors (default: as many as the cluster's CPUs allow) holds one
    model and uses ``threads_per_actor`` intra-op threads, reserved as that many CPUs, so that
    actors x threads never exceeds the cores. Files that cannot be read get ``error`` set in
    their row, the rest are classified. With ``output`` (a folder), the rows are written there
    as Parquet, one file per block, and None is returned; otherwise the (lazy) Dataset is. An
    output folder that is not empty is a FileExistsError unless ``overwrite`` replaces it.
    """
    if threads_per_actor < 1:
        raise ValueError(f"threads_per_actor must be at least 1, got {threads_per_actor}")
    if output is not None and not overwrite and os.path.exists(output) and os.listdir(output):
        raise FileExistsError(
            f"{os.fspath(output)!r} is not empty: pass overwrite=True to replace it"
        )
    given = [images] if isinstance(images, str | os.PathLike) else list(images)
    if not given:
        raise _C.InputError("no images given")
    paths = _C.expand_image_paths([os.fspath(path) for path in given])  # or says none are there
    if not ray.is_initialized():
        ray.init()
    if concurrency is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        concurrency = max(1, min(cpus // threads_per_actor, -(-len(paths) // batch_size)))
    dataset = ray.data.from_items([{"path": path} for path in paths]).map_batches(
        Predictor,
        fn_constructor_args=(os.fspath(model),),
        fn_constructor_kwargs={
            "k": k,
            "labels": labels,
            "preprocess": preprocess,
            "threads": threads_per_actor,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),  # Ray's `concurrency` is deprecated
        num_cpus=threads_per_actor,
    )
    if output is None:
        return dataset
    mode = ray.data.SaveMode.OVERWRITE if overwrite else ray.data.SaveMode.APPEND
    dataset.write_parquet(os.fspath(output), mode=mode)
    return None
