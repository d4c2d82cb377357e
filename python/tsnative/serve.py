"""tsnative.serve: the native inference server (`ts-infer serve`, KServe's Open Inference
Protocol v2 over REST and gRPC) started from Python. The server is the C++ program itself, in
a process of its own: no Python on its request path, and a crash or a Ctrl-C there never
takes the caller with it.

    tsnative.serve("models/")                          # blocks until Ctrl-C
    with tsnative.serve("model.pt2", http_port=0, grpc_port=0, background=True) as server:
        requests.post(f"{server.url}/v2/models/model/infer", json=...)
        tritonclient.grpc.InferenceServerClient(server.grpc_address)
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Sequence
from pathlib import Path

_LISTENING = re.compile(r"listening on (http://\S+)(?: and grpc://(\S+))?")


def ts_infer_path() -> Path:
    """The ts-infer that $TSNATIVE_TS_INFER names where set (another build of it: make
    test-sanitize runs the server's tests on the sanitizer build's), else the one installed
    beside this Python (its scripts folder), else the one on PATH."""
    named = os.environ.get("TSNATIVE_TS_INFER")
    if named:
        if not Path(named).is_file():
            raise FileNotFoundError(f"TSNATIVE_TS_INFER names {named}, which is not a file")
        return Path(named)
    beside = Path(sysconfig.get_path("scripts")) / "ts-infer"
    if beside.is_file():
        return beside
    import shutil

    found = shutil.which("ts-infer")
    if found is None:
        raise FileNotFoundError(f"ts-infer is not installed (looked in {beside.parent} and PATH)")
    return Path(found)


class ServerError(RuntimeError):
    """The server did not start, or stopped on its own: the message is what it said."""


class Server:
    """A running `ts-infer serve`: its url (HTTP), grpc_address (host:port, None without
    gRPC), whether it is ready, and stop(). A context manager
    that stops it on exit. Its log lines (one per request at log_level="info") go to
    self.log, and to stderr when echo is true."""

    def __init__(self, command: Sequence[str], echo: bool) -> None:
        self.command = list(command)
        self.log: list[str] = []
        self._echo = echo
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        listening = self._wait_for(_LISTENING, timeout=60)
        self.url = listening.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        self.grpc_address: str | None = listening.group(2)
        self.grpc_port = int(self.grpc_address.rsplit(":", 1)[1]) if self.grpc_address else None

    def _read(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            line = line.rstrip("\n")
            self.log.append(line)
            if self._echo:
                print(line, file=sys.stderr, flush=True)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise ServerError(
                    f"ts-infer serve said nothing of {pattern.pattern!r} in {timeout} s"
                ) from None
            if line is None:
                code = self.stop()
                said = "; ".join(self.log[-3:]) or "nothing"
                raise ServerError(f"ts-infer serve exited with status {code}: {said}")
            found = pattern.search(line)
            if found:
                return found

    def wait_ready(self, timeout: float = 300) -> Server:
        """Blocks until every model has loaded and warmed up (the server's "ready:" line)."""
        self._wait_for(re.compile(r"ready: "), timeout)
        return self

    @property
    def pid(self) -> int:
        """The server's process id (to watch its memory, say)."""
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (requests in flight finish), then waits; SIGKILL after `timeout` s. Returns
        the exit status: 0 after a clean shutdown."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(timeout=5)
        if self._process.stderr is not None and not self._reader.is_alive():
            self._process.stderr.close()
        return self._process.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    path: str | os.PathLike[str],
    *,
    http_port: int = 8000,
    grpc_port: int | None = 8001,
    host: str = "127.0.0.1",
    background: bool = False,
    device: str = "cpu",
    threads: int | None = None,
    optimize: str = "none",
    max_batch_size: int = 32,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 0,
    instances: int = 1,
    max_request_bytes: int | None = None,
    timeout: int | None = None,
    model_control: str = "none",
    load_models: Sequence[str] = (),
    repository_poll_secs: int | None = None,
    log_level: str = "info",
    echo: bool | None = None,
) -> Server | int:
    """Serves a model file (.pt, .pt2), a folder of them or a Triton-style repository
    (NAME/VERSION/model.pt) over KServe's Open Inference Protocol v2, REST and gRPC, as
    `ts-infer serve` does (its flags, by the same names). A port of 0 takes any free one
    (server.url and server.grpc_address say which); grpc_port=None serves no gRPC.
    model_control="explicit" loads only `load_models` at start ("*": all), then models are
    loaded and unloaded on request (POST /v2/repository/models/NAME/load, or a client's
    load_model); "poll" reloads models as their files change, every repository_poll_secs.

    background=False blocks until the server stops (Ctrl-C stops it cleanly) and returns its
    exit status. background=True returns a Server once it listens, loading its models (call
    server.wait_ready() to wait for them); its log is echoed to stderr only if echo=True.
    Raises ServerError if it exits before listening (a bad path, a port in use).
    """
    command = [str(ts_infer_path()), "serve", os.fspath(path)]
    command += ["--http-port", str(http_port), "--host", host, "--device", device]
    command += ["--grpc-port", str(-1 if grpc_port is None else grpc_port)]
    command += ["--optimize", optimize, "--max-batch-size", str(max_batch_size)]
    command += ["--max-queue-delay-us", str(max_queue_delay_us), "--instances", str(instances)]
    command += ["--log-level", log_level, "--model-control", model_control]
    for name in load_models:
        command += ["--load-model", name]
    if repository_poll_secs is not None:
        command += ["--repository-poll-secs", str(repository_poll_secs)]
    for size in preferred_batch_sizes:
        command += ["--preferred-batch-size", str(size)]
    if threads is not None:
        command += ["--threads", str(threads)]
    if max_request_bytes is not None:
        command += ["--max-request-bytes", str(max_request_bytes)]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    server = Server(command, echo=bool(echo) if background else echo is not False)
    if background:
        return server
    try:
        while server.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    return server.stop()
