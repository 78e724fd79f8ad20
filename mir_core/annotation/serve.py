"""A local OpenAI-compatible server for the annotation chain: ``transformers serve``.

Used by the server test and ``benchmarks/annotation_server.py``; handy for trying the
``openai`` backend with no external service:

    >>> from mir_core.annotation import ensure_converted
    >>> with TransformersServer(ensure_converted("smollm2-135m-instruct")) as srv:
    ...     print(srv.base_url, srv.model)     # http://127.0.0.1:<free port>/v1, the folder

The server is started in a process group of its own (``start_new_session``) on 127.0.0.1
and a free port, fully offline (``HF_HUB_OFFLINE=1``), with the model preloaded (it is the
server's forced model, so requests must name exactly that folder: :attr:`model`). Readiness
is ``GET /health`` answering 200, polled with a bounded total time (the forced model is
loaded before the app starts, so a healthy server has its model); ``/v1/models`` is not
used (it scans the hub cache and answers 500 without one). :meth:`stop` sends SIGTERM to
the whole group, then SIGKILL to whatever is left after ``stop_timeout_s``, and reaps the
leader; it is called by ``__exit__`` and by :meth:`start` itself when startup fails.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from .backends import BackendError


class ServerStartError(BackendError):
    """The server process exited or did not become healthy in time; the message holds the
    end of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def transformers_cli() -> list[str]:
    """The ``transformers`` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "transformers"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "transformers.cli.transformers"]


def group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # exists, owned by someone else (cannot be ours)
        return True
    return True


class TransformersServer:
    """``transformers serve <model>`` as a subprocess (see the module docstring)."""

    def __init__(self, model: str | Path, *, host: str = "127.0.0.1", port: int | None = None,
                 device: str = "cpu", startup_timeout_s: float = 180.0,
                 stop_timeout_s: float = 10.0, log_path: str | Path | None = None,
                 extra_args: Sequence[str] = (), env: dict | None = None):
        self.model = str(model)
        self.host = host
        self.port = port
        self.device = device
        self.startup_timeout_s = float(startup_timeout_s)
        self.stop_timeout_s = float(stop_timeout_s)
        self.log_path = Path(log_path) if log_path else None
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.startup_s: float | None = None
        self._log_fh = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def command(self) -> list[str]:
        return [*transformers_cli(), "serve", self.model, "--host", self.host,
                "--port", str(self.port), "--device", self.device, *self.extra_args]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "TransformersServer":
        if self.proc is not None:
            raise RuntimeError("server already started")
        if self.port is None:
            self.port = free_port(self.host)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="transformers-serve-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
               "PYTHONUNBUFFERED": "1", **self.env}
        self._log_fh = open(self.log_path, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._log_fh, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.pgid = self.proc.pid           # a new session: the leader's pid is the group id
        try:
            self._wait_healthy(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - t0
        return self

    def _wait_healthy(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout_s
        last = "no answer yet"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerStartError(f"transformers serve exited with status {code} before "
                                       f"it was healthy; log {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2.0) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except (OSError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
            if time.perf_counter() >= deadline:
                raise ServerStartError(f"transformers serve was not healthy after "
                                       f"{self.startup_timeout_s:.0f} s (last: {last}); log "
                                       f"{self.log_path}:\n{self.log_tail()}")
            time.sleep(0.5)

    def warmup(self, max_tokens: int = 4, timeout_s: float = 120.0) -> float:
        """One small chat completion (the first request pays one-off costs); seconds taken."""
        body = json.dumps({"model": self.model, "max_tokens": int(max_tokens),
                           "messages": [{"role": "user", "content": "Hello"}]}).encode()
        req = urllib.request.Request(self.base_url + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            r.read()
        return time.perf_counter() - t0

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after ``stop_timeout_s``; idempotent."""
        proc, pgid = self.proc, self.pgid
        if proc is None or pgid is None:
            return
        try:
            if group_alive(pgid):
                try:
                    os.killpg(pgid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + self.stop_timeout_s
                while time.monotonic() < deadline:
                    if proc.poll() is not None and not group_alive(pgid):
                        break
                    time.sleep(0.1)
                if group_alive(pgid):
                    try:
                        os.killpg(pgid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:       # pragma: no cover - SIGKILL cannot be caught
                pass
        finally:
            if self._log_fh is not None:
                self._log_fh.close()
                self._log_fh = None

    @property
    def stopped(self) -> bool:
        """True once the leader is reaped and no process of its group is left."""
        return (self.proc is not None and self.proc.poll() is not None
                and not group_alive(self.pgid))

    def log_tail(self, n: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def __enter__(self) -> "TransformersServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["TransformersServer", "ServerStartError", "free_port", "group_alive",
           "transformers_cli"]
