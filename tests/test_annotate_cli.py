"""``python -m mir_core annotate`` against a scripted HTTP server on 127.0.0.1 (fast; the
real ``transformers serve`` run is tests/test_annotation_server.py): the cache makes a
rerun send nothing (even with the server gone), the statistics are appended per
invocation, the key comes from the environment only and is written nowhere, the progress
bars show hits and failures, and every expected error is one line with exit status 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mir_core.__main__ import main
from mir_core.annotation import ReplyCache
from mir_core.annotation.batch import BatchSpec, run_batch, stats_path
from mir_core.annotation.serve import free_port
from test_annotation_openai import FakeServer   # scripted (status, text, delay)

KEY = "sk-test-SECRET123"


@pytest.fixture
def stub():
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("MIR_LLM_BASE_URL", "MIR_LLM_MODEL", "MIR_LLM_API_KEY", "MY_KEY"):
        monkeypatch.delenv(var, raising=False)


def _args(url, cache, root, *extra):
    return ["annotate", "--dataset", "MIntRec2.0", "--split", "train", "--base-url", url,
            "--model", "stub-model", "--cache", str(cache), "--data-root", str(root),
            "--http-retries", "0", *extra]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _no_key_anywhere(folder: Path, *texts: str) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            assert KEY not in f.read_text(encoding="utf-8", errors="replace"), f
    for t in texts:
        assert KEY not in t


def test_run_rerun_stats_and_no_key(stub, data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIR_LLM_API_KEY", KEY)
    cache = tmp_path / "run" / "replies.jsonl"
    args = _args(stub.url, cache, data_root, "--steps", "2", "3", "--limit", "3",
                 "--concurrency", "2", "--out", str(tmp_path / "run" / "out"))
    assert main(args) == 0
    out1, err1 = capsys.readouterr()
    assert len(stub.requests) == 9 + 3                      # 3 samples x A/E/I, 3 ranks
    assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in stub.requests)
    assert all(r["body"]["model"] == "stub-model" for r in stub.requests)
    summary = json.loads(out1)
    assert summary["status"] == "ok" and summary["requests"] == 12
    # one bar per step, with hits / failures in the postfix
    assert "annotate describe" in err1 and "annotate rank" in err1
    assert "hits=0" in err1 and "fail=0" in err1 and "new=9" in err1

    sp = stats_path(cache)
    assert sp == tmp_path / "run" / "replies.stats.jsonl"
    (first,) = _records(sp)
    assert first["status"] == "ok" and first["backend"] == "openai"
    assert first["model"] == "stub-model" and first["concurrency"] == 2
    assert first["api_key_env"] == "MIR_LLM_API_KEY" and first["api_key_set"] is True
    assert first["counts"]["requests"] == 12 and first["counts"]["failures"] == 0
    assert first["counts"]["transport_failures"] == 0
    assert first["run_stats"]["describe"]["queried"] == 9
    assert first["run_stats"]["rank"]["items_per_s"] > 0
    assert first["cache_records_before"] == 0 and first["cache_records_after"] == 12
    assert first["wall_s"] > 0
    assert len(ReplyCache(cache)) == 12
    assert (tmp_path / "run" / "out" / "ranks.tsv").exists()

    assert main(args) == 0                                  # the same command again
    out2, err2 = capsys.readouterr()
    assert len(stub.requests) == 12                          # nothing new was sent
    first_again, second = _records(sp)                       # appended, not overwritten
    assert first_again == first
    assert second["counts"]["requests"] == 0 and second["counts"]["queried"] == 0
    assert second["counts"]["cache_hits"] == 12 and second["cache_records_after"] == 12
    assert "hits=9" in err2 and "new=0" in err2
    _no_key_anywhere(tmp_path, out1, err1, out2, err2)


def test_cached_rerun_needs_no_server(data_root, tmp_path, capsys):
    s = FakeServer()
    cache = tmp_path / "replies.jsonl"
    args = _args(s.url, cache, data_root, "--steps", "3", "--limit", "2", "--no-progress")
    assert main(args) == 0 and len(s.requests) == 2
    s.close()                                                # the server is gone
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert _records(stats_path(cache))[-1]["counts"]["cache_hits"] == 2
    assert "error" not in err


def test_unreachable_server_one_line_exit_2(data_root, tmp_path, capsys):
    cache = tmp_path / "replies.jsonl"
    url = f"http://127.0.0.1:{free_port()}/v1"               # nobody listens there
    assert main(_args(url, cache, data_root, "--steps", "3", "--limit", "2")) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ServerUnreachable: cannot reach")
    assert "Traceback" not in err and out == ""
    (rec,) = _records(stats_path(cache))
    assert rec["status"] == "aborted" and rec["counts"]["requests"] == 0


@pytest.mark.parametrize("extra, message", [
    (["--dataset", "NoSuchData"], "KeyError: unknown dataset"),
    (["--split", "dev", "--steps", "3"], "StepError: step 3 reads the gold label"),
    (["--concurrency", "0"], "BatchError: --concurrency must be at least 1"),
    (["--limit", "0"], "BatchError: --limit must be at least 1"),
    (["--api-key-env", "MY_KEY"], "BatchError: --api-key-env MY_KEY: that environment"),
    (["--rank-mode", "loglik", "--steps", "3"], "BatchError: --rank-mode loglik needs"),
    (["--max-new-tokens", "rank=many"], "ConfigError: --max-new-tokens rank='many'"),
    (["--max-new-tokens", "ranks=8"], "BatchError: --max-new-tokens ranks=..."),
    (["--steps", "labels", "--label-shots", "0"], "BatchError: --label-shots must be at least 1"),
    (["--steps", "labels", "--label-examples", "/no/such/paper.json"],
     "LabelDescriptionsError: label descriptions file /no/such/paper.json does not exist"),
])
def test_bad_settings_one_line_exit_2(extra, message, data_root, tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert main(_args(url, tmp_path / "c.jsonl", data_root, *extra)) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), err


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1/v1", "is not an http(s) URL"),
    ("http://127.0.0.1:99999/v1", "BatchError: base URL"),
])
def test_bad_urls(url, message, data_root, tmp_path, capsys):
    assert main(_args(url, tmp_path / "c.jsonl", data_root, "--steps", "3")) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_model_and_no_key_flag(data_root, tmp_path, capsys):
    args = ["annotate", "--base-url", "http://127.0.0.1:1/v1", "--cache",
            str(tmp_path / "c.jsonl")]
    assert main(args) == 2
    assert "needs --model (or MIR_LLM_MODEL)" in capsys.readouterr().err
    # no option takes the key; "--api-key KEY" abbreviates --api-key-env and is refused
    # without echoing the key
    assert main(args + ["--model", "m", "--api-key", KEY]) == 2
    err = capsys.readouterr().err
    assert "not the key itself" in err and KEY not in err
    assert main(args + ["--model", "m", "--api-key-env", "sk_live_abc"]) == 2
    err = capsys.readouterr().err
    assert "sk_live_abc" not in err and "not set" in err


def test_key_from_named_variable(stub, data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    cache = tmp_path / "replies.jsonl"
    args = _args(stub.url, cache, data_root, "--steps", "3", "--limit", "1",
                 "--api-key-env", "MY_KEY")
    assert main(args) == 0
    assert stub.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    rec = _records(stats_path(cache))[0]
    assert rec["api_key_env"] == "MY_KEY" and rec["api_key_set"] is True
    out, err = capsys.readouterr()
    _no_key_anywhere(tmp_path, out, err, " ".join(rec["argv"]))


def test_server_errors_stop_the_run_and_resume(stub, data_root, tmp_path, capsys,
                                               monkeypatch):
    monkeypatch.setenv("MIR_LLM_API_KEY", KEY)
    stub.script = [(503, f"overloaded; your key {KEY}", 0.0)] * 3
    cache = tmp_path / "replies.jsonl"
    args = _args(stub.url, cache, data_root, "--steps", "3", "--limit", "6",
                 "--concurrency", "1", "--abort-after", "3")
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert len(stub.requests) == 3
    assert "error: ServerStopped: 3 items in a row could not be answered" in err
    rec = _records(stats_path(cache))[-1]
    assert rec["status"] == "aborted" and rec["counts"]["transport_failures"] == 3
    assert main(args) == 0                                   # the server is back: resume
    rec = _records(stats_path(cache))[-1]
    assert rec["counts"]["queried"] == 6 and rec["counts"]["cache_hits"] == 0
    assert len(stub.requests) == 3 + 6
    _no_key_anywhere(tmp_path, out, err, *capsys.readouterr())


def test_refused_key_stops_at_the_first_item(stub, data_root, tmp_path, capsys):
    stub.script = [(401, "invalid api key", 0.0)] * 5
    args = _args(stub.url, tmp_path / "c.jsonl", data_root, "--steps", "3", "--limit", "4",
                 "--concurrency", "1")
    assert main(args) == 2
    assert len(stub.requests) == 1
    assert "HTTP 401" in capsys.readouterr().err


def test_unanswered_items_exit_1_then_rerun_retries_them(stub, data_root, tmp_path, capsys):
    stub.script = [(503, "busy", 0.0)]
    cache = tmp_path / "c.jsonl"
    args = _args(stub.url, cache, data_root, "--steps", "3", "--limit", "3",
                 "--concurrency", "1", "--no-progress")
    assert main(args) == 1
    assert "incomplete: 1 items could not be answered" in capsys.readouterr().err
    assert _records(stats_path(cache))[-1]["status"] == "incomplete"
    assert main(args) == 0 and len(stub.requests) == 3 + 1


def test_run_batch_function(stub, data_root, tmp_path):
    spec = BatchSpec(steps=["3"], base_url=stub.url, model="stub-model", limit=2,
                     cache=tmp_path / "r.jsonl", data_root=data_root, progress=False)
    res = run_batch(spec)
    assert res.exit_status == 0 and res.record["counts"]["requests"] == 2
    assert res.results["rank"].ok.all()
    assert res.stats_path == tmp_path / "r.stats.jsonl"
