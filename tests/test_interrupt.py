"""Ctrl-C during a long folder run, and results as they come: `tsnative.classify` raises
KeyboardInterrupt within a batch of the signal; `ts-infer DIR` prints each batch's results as
soon as they are known (flushed, in order), and on SIGINT stops after the batch in hand with
exit status 130 and every result before it printed.

The folder holds thousands of hard links to one photo: a run of many seconds (about 1.5 ms an
image here), interrupted after its first batch. The results printed before the interrupt are
checked against tsnative.classify on the same files, itself checked against Pillow and eager
PyTorch in test_classify.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tsnative
from conftest import Classifier

IMAGES = 6000
BATCH = 8
# Larger than the tiny classifier's own, so that each image takes a while to preprocess.
SLOW_PREPROCESS = ("--resize", "256", "--crop", "224")


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory, photo_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("many")
    source = sorted(photo_dir.glob("*.png"))[0]
    for number in range(IMAGES):
        os.link(source, folder / f"img{number:05d}.png")
    return folder


def folder_run(ts_infer: Path, model: Path, folder: Path, *flags: str) -> subprocess.Popen[str]:
    """ts-infer classifying `folder` in batches of BATCH, slowly, its output in pipes."""
    command = [ts_infer, model, folder, "--batch-size", str(BATCH), *SLOW_PREPROCESS, *flags]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rest_of(process: subprocess.Popen[str]) -> tuple[str, str]:
    """What is left of stdout (after the lines already read from its buffer) and stderr, once
    the process ends."""
    assert process.stdout is not None and process.stderr is not None
    rest, stderr = process.stdout.read(), process.stderr.read()
    process.wait(timeout=60)
    return rest, stderr


def read_line_within(process: subprocess.Popen[str], seconds: float) -> str:
    """The next line of the process's stdout; fails the test if none comes in time."""
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    line = process.stdout.readline()  # blocks; the run is long, and its first batch is quick
    assert time.monotonic() < deadline, "no output before the deadline"
    return line


def test_classify_stops_on_ctrl_c_within_a_batch(
    tiny_classifier: Classifier, big_folder: Path
) -> None:
    script = f"""
import time, tsnative
module = tsnative.load({str(tiny_classifier.path)!r})
print("started", flush=True)
try:
    tsnative.classify(module, {str(big_folder)!r}, batch_size={BATCH},
                      preprocess={{"resize": 256, "crop": 224}})
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
"""
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert read_line_within(process, 60) == "started\n"
        time.sleep(1.0)  # well into a run of many seconds
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    word, at = stdout.split()
    assert word == "interrupted"  # not "finished": the run was stopped
    assert float(at) - sent < 1.0  # within a second of the signal


def test_ts_infer_streams_results_and_stops_on_ctrl_c(
    ts_infer: Path, tiny_classifier: Classifier, big_folder: Path
) -> None:
    with folder_run(ts_infer, tiny_classifier.path, big_folder, "--json", "-k", "2") as process:
        # Streamed: the first batch's lines arrive while the run goes on.
        first = [read_line_within(process, 60) for _ in range(BATCH)]
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        rest, stderr = rest_of(process)
        stopped = time.monotonic()
    assert stopped - sent < 1.0, "ts-infer took more than a second to stop"
    assert process.returncode == 130, stderr
    lines = [json.loads(line) for line in first + rest.splitlines()]
    assert BATCH <= len(lines) < IMAGES and len(lines) % BATCH == 0  # whole batches, then stop
    assert stderr == (
        f"ts-infer: interrupted after {len(lines)} of {IMAGES} images (their results are above)\n"
    )
    # In order, and what classify finds for the same files.
    files = sorted(str(path) for path in big_folder.iterdir())[: len(lines)]
    assert [line["path"] for line in lines] == files
    expected = tsnative.classify(
        tiny_classifier.path, files[:BATCH], k=2, preprocess={"resize": 256, "crop": 224}
    )
    for line, result in zip(lines, expected, strict=False):
        assert [p["label"] for p in line["predictions"]] == [p.label for p in result.predictions]
        assert [p["probability"] for p in line["predictions"]] == [
            p.probability for p in result.predictions
        ]


def test_ts_infer_text_output_is_streamed_too(
    ts_infer: Path, tiny_classifier: Classifier, big_folder: Path
) -> None:
    with folder_run(ts_infer, tiny_classifier.path, big_folder, "-k", "1") as process:
        header = read_line_within(process, 60)
        process.send_signal(signal.SIGINT)
        rest, stderr = rest_of(process)
    assert header == f"{sorted(big_folder.iterdir())[0]}\n"
    assert process.returncode == 130, stderr
    printed = (header + rest).splitlines()
    assert len(printed) == 2 * int(stderr.split()[3])  # a path and one prediction per image
