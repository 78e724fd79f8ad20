"""Sharded feature store: one entry computed by the processes of a distributed job.

Real jobs: a script written to the test's folder, launched with ``torchrun --nproc_per_node
2`` (gloo on CPU through accelerate's ``PartialState(cpu=True)``), whose compute appends
its process index, pid and inputs to a log file. In-process jobs: two threads standing for
two processes (a ``threading.Barrier`` as the process group), for the hit cases.
Also: clip decoding in DataLoader workers gives what decoding in the calling process gives.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from mir_core.features.audio import AudioSettings
from mir_core.features.clips import make_clip_set
from mir_core.features import extract as extract_mod
from mir_core.features.extract import ClipItem, extract_clip_features
from mir_core.features.store import FeatureStore
from test_features_extract import VSET, FakeAudioEncoder, FakeFrameEncoder
from test_store_faults import KEY, assert_same, counting, features

REPO = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).parent / "torchrun"
INPUTS = [f"utterance number {i}" + "?" * (i % 4) for i in range(22)]
CHUNK = 3                    # 8 chunks: process 0 gets starts 0..9, process 1 starts 12..21
JOB_TIMEOUT = 90             # seconds for one torchrun job (about 6 s on 2 busy cores)

SCRIPT = '''
"""One process of a sharded build of the toy entry (launched by torchrun)."""
import json, os, sys
import numpy as np
from accelerate import PartialState
sys.path.insert(0, {tests!r})
from test_store_faults import KEY, features
from test_store_sharded import CHUNK, INPUTS
from mir_core.features.store import FeatureStore

root, work = sys.argv[1], sys.argv[2]
state = PartialState(cpu=True)
with open(f"{{work}}/pid-{{state.process_index}}", "w") as fh:
    fh.write(str(os.getpid()))
calls = []

def compute(batch):
    if state.process_index == int(os.environ.get("DIE_RANK", -1)) and len(calls) == 1:
        os._exit(3)                               # killed mid-way, after its first chunk
    calls.append(list(batch))
    with open(f"{{work}}/compute-{{state.process_index}}.jsonl", "a") as fh:
        fh.write(json.dumps({{"pid": os.getpid(), "inputs": list(batch)}}) + "\\n")
    return features(batch)

store = FeatureStore(root, log=lambda m: print(m, flush=True)).sharded(state)
out = store.get_or_compute(inputs=INPUTS, compute=compute, chunk_size=CHUNK, progress=False,
                           **KEY)
np.savez(f"{{work}}/out-{{state.process_index}}.npz", **out)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def run_job(root: Path, work: Path, nproc: int = 2, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """Launch the script with torchrun; kill the launcher and every worker it left behind."""
    work.mkdir(parents=True, exist_ok=True)
    script = work / "job.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests")))
    for old in work.glob("pid-*"):
        old.unlink()
    cmd = [str(TORCHRUN), "--nproc_per_node", str(nproc), "--master_port", str(free_port()),
           str(script), str(root), str(work)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.Popen(cmd, cwd=work, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=JOB_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        workers = [int(text) for text in (p.read_text() for p in work.glob("pid-*")) if text]
        for pid in workers:                 # torchrun starts each worker in its own session
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not [pid for pid in workers if alive(pid)], "a worker process was left behind"
    return subprocess.CompletedProcess(cmd, proc.returncode, out)


def compute_log(work: Path) -> dict[int, list[str]]:
    """Items each process computed (process index -> inputs, in call order)."""
    out = {}
    for f in sorted(work.glob("compute-*.jsonl")):
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        assert len({r["pid"] for r in rows}) == 1
        out[int(f.stem.split("-")[1])] = [t for r in rows for t in r["inputs"]]
    return out


# --------------------------------------------------------------------------- real processes
def test_two_processes_share_one_entry(tmp_path):
    root, work = tmp_path / "fs", tmp_path / "job"
    job = run_job(root, work)
    assert job.returncode == 0, job.stdout
    computed = compute_log(work)
    assert set(computed) == {0, 1}                            # both processes computed
    assert computed[0] == INPUTS[:12] and computed[1] == INPUTS[12:]   # each item once
    single = FeatureStore(tmp_path / "single").get_or_compute(
        inputs=INPUTS, compute=features, chunk_size=CHUNK, progress=False, **KEY)
    for rank in (0, 1):
        with np.load(work / f"out-{rank}.npz") as out:
            assert_same(dict(out), single)
    manifests = list(root.rglob("manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["n"] == len(INPUTS) and manifest["chunks_computed"] == 8
    assert not list(root.rglob("parts")) and not list(root.rglob(".staging-*"))


def test_killed_process_fails_the_job_and_the_rerun_computes_the_rest(tmp_path):
    root, work = tmp_path / "fs", tmp_path / "job"
    job = run_job(root, work, env={"DIE_RANK": "1"})
    assert job.returncode != 0, job.stdout
    first = compute_log(work)
    assert first[1] == INPUTS[12:15]                          # rank 1 finished one chunk
    parts = next(root.rglob("parts"))
    finished = sorted(int(p.name.split(".")[0]) for p in parts.glob("*.done"))
    assert 12 in finished and 15 not in finished
    assert not list(root.rglob("manifest.json"))
    kept = {t for s in finished for t in INPUTS[s:s + CHUNK]}
    assert kept <= {t for items in first.values() for t in items}

    for f in work.glob("compute-*.jsonl"):
        f.unlink()
    again = run_job(root, work)
    assert again.returncode == 0, again.stdout
    rerun = [t for items in compute_log(work).values() for t in items]
    assert sorted(rerun) == sorted(set(INPUTS) - kept)        # only the missing chunks
    for rank in (0, 1):
        with np.load(work / f"out-{rank}.npz") as out:
            assert_same(dict(out), features(INPUTS))
    assert len(list(root.rglob("manifest.json"))) == 1 and not list(root.rglob("parts"))


# --------------------------------------------------------------------------- in-process jobs
class ThreadProcesses:
    """Process ``index`` of ``n`` threads: the PartialState methods the store uses."""

    def __init__(self, index: int, n: int, barrier: threading.Barrier | None = None):
        self.process_index, self.num_processes = index, n
        self.is_main_process = index == 0
        self.barrier, self.waits = barrier, 0

    def wait_for_everyone(self) -> None:
        self.waits += 1
        self.barrier.wait(timeout=20)

    @contextmanager
    def split_between_processes(self, items: list):
        per, extra = divmod(len(items), self.num_processes)
        start = self.process_index * per + min(self.process_index, extra)
        yield items[start:start + per + (self.process_index < extra)]


def thread_job(root: Path, inputs: list[str], calls: dict[int, list]) -> list[ThreadProcesses]:
    """Two threads make the same sharded call; returns their states (their waits)."""
    barrier = threading.Barrier(2)
    states = [ThreadProcesses(i, 2, barrier) for i in range(2)]

    def one(state: ThreadProcesses):
        calls.setdefault(state.process_index, [])
        store = FeatureStore(root, log=lambda m: None).sharded(state)
        out = store.get_or_compute(inputs=inputs, compute=counting(calls[state.process_index]),
                                   chunk_size=CHUNK, progress=False, **KEY)
        assert_same(out, features(inputs))

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(one, s) for s in states]:
            f.result(timeout=60)
    return states


class Killed(BaseException):
    """Stands for a kill mid-run."""


def test_sharded_hits_agree_between_processes(tmp_path):
    """A cold build uses 3 barriers; an exact hit and a subset hit use 1, and no process
    computes anything, even where a killed writer left its parts/run in the subset's entry."""
    root, calls = tmp_path / "fs", {}

    def killed(batch):
        raise Killed

    with pytest.raises(Killed):                               # before the full entry exists
        FeatureStore(root).get_or_compute(inputs=INPUTS[:5], compute=killed,
                                          chunk_size=CHUNK, progress=False, **KEY)
    stale = next(root.rglob("parts"))
    assert (stale / "run").exists()
    cold = thread_job(root, INPUTS, calls)
    assert [s.waits for s in cold] == [3, 3]
    assert sum(calls[0], []) == INPUTS[:12] and sum(calls[1], []) == INPUTS[12:]
    calls.clear()
    for inputs in (INPUTS, INPUTS[:5]):                       # exact hit, subset hit
        assert [s.waits for s in thread_job(root, inputs, calls)] == [1, 1]
    assert sum(map(len, calls.values())) == 0
    assert not (stale / "run").exists()


def test_sharded_with_one_process_is_the_plain_store(tmp_path):
    one = ThreadProcesses(0, 1)
    a_calls, b_calls, lines = [], [], []
    kw = dict(KEY, chunk_size=CHUNK, progress=False)
    plain = FeatureStore(tmp_path / "a")
    base = FeatureStore(tmp_path / "b", log=lines.append)
    sharded = base.sharded(one)
    assert sharded.root == base.root and sharded.log is base.log
    for inputs in (INPUTS, INPUTS[2:9], INPUTS[:4] + ["new"]):  # build, subset, partial
        a = plain.get_or_compute_entry(inputs=inputs, compute=counting(a_calls), **kw)
        b = sharded.get_or_compute_entry(inputs=inputs, compute=counting(b_calls), **kw)
        assert_same(a.load(), b.load())
        assert a.path.relative_to(tmp_path / "a") == b.path.relative_to(tmp_path / "b")
        assert (a.rows is None) == (b.rows is None)
        drop = ("seconds", "created")
        assert ({k: v for k, v in a.manifest.items() if k not in drop}
                == {k: v for k, v in b.manifest.items() if k not in drop})
    assert a_calls == b_calls and one.waits == 0 and not lines


# --------------------------------------------------------------------------- decode workers
def test_decode_workers_match_decoding_here(tmp_path, monkeypatch):
    decoders = tmp_path / "decoders"                          # one file per decoding pid
    decoders.mkdir()
    decode = extract_mod._decode

    def recorded(*args):
        (decoders / str(os.getpid())).touch()
        return decode(*args)

    monkeypatch.setattr(extract_mod, "_decode", recorded)
    clips = list(make_clip_set(tmp_path / "clips", 4, ["A", "B"], seconds=1.0,
                               broken=["corrupt"]))
    clips.append(ClipItem("ghost", str(tmp_path / "clips" / "ghost.mp4")))
    for modality, settings, make in (("video", VSET, FakeFrameEncoder),
                                     ("audio", AudioSettings(encoder="fake-audio", max_len=60),
                                      FakeAudioEncoder)):
        results, pids = [], []
        for workers in (0, 2):
            results.append(extract_clip_features(
                clips, modality, settings, store=FeatureStore(tmp_path / f"fs-{workers}"),
                encoder=make(), batch_size=3, num_workers=workers, progress=False,
                log=lambda *_: None))
            pids.append({int(f.name) for f in decoders.iterdir()})
            for f in decoders.iterdir():
                f.unlink()
        assert pids[0] == {os.getpid()}
        assert len(pids[1]) >= 2 and os.getpid() not in pids[1]   # decoded in workers
        here, pooled = results
        assert here.computed and pooled.computed
        assert_same(pooled.arrays, here.arrays)
        assert pooled.manifest.equals(here.manifest)
        assert dict(zip(pooled.errors.item_id, pooled.errors.error_class)) == {
            "broken_corrupt": "CorruptFileError", "ghost": "MissingFileError"}
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        extract_clip_features(clips, "video", VSET, num_workers=-1)
