"""Feature store faults: damaged files and manifests, damaged sibling entries used as row
sources, damaged chunks on resume, two concurrent writers and a killed writer.

Every damage test builds one entry (10 items, chunks of 4), damages it on disk, asks for it
again and checks: the data equals a fresh compute, exactly one log line names the entry
folder, the file and the fault, and compute ran exactly as often as the recovery needs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mir_core.features import store as store_mod
from mir_core.features.store import FeatureStore, StoreError

REPO = Path(__file__).resolve().parent.parent
AREA = "feature store"
INPUTS = [f"utterance number {i}" + "!" * (i % 3) for i in range(10)]
CHUNK = 4                                   # 3 chunks: 4 + 4 + 2 items
KEY = dict(dataset="D", split="train", modality="text", encoder="enc", settings={"max_len": 8})
SILENT = "silent wrong: the damaged bytes are returned and train to F1 0.2-1.4"
CRASH = "crash with an error that does not name the entry"


def features(batch) -> dict[str, np.ndarray]:
    """Per item (a row never depends on its neighbours in the batch): x (B, 2), y (B, 3, 4)."""
    codes = np.array([sum(map(ord, t)) for t in batch], dtype=np.float32)
    x = np.stack([np.array([len(t) for t in batch], np.float32), codes], axis=1)
    y = (np.arange(12, dtype=np.float32).reshape(1, 3, 4) * (codes % 7)[:, None, None]
         + x[:, :1, None]).astype(np.float16)
    return {"x": x.reshape(len(batch), 2), "y": y.reshape(len(batch), 3, 4)}


def counting(calls: list):
    def compute(batch):
        calls.append(list(batch))
        return features(batch)
    return compute


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
        np.testing.assert_array_equal(got[name], want[name])


class Setup:
    """A store with one finished entry of INPUTS; ``lines`` collects its log."""

    def __init__(self, root: Path):
        self.lines: list[str] = []
        self.calls: list[list[str]] = []
        self.store = FeatureStore(root, log=self.lines.append)
        self.kw = dict(KEY, compute=counting(self.calls), chunk_size=CHUNK, progress=False)
        self.entry = self.store.get_or_compute_entry(inputs=INPUTS, **self.kw)
        assert len(self.calls) == 3 and not self.lines

    def recovers(self, what: str, problem: str, recomputed_items: int) -> None:
        """The next request logs one line naming entry, file and problem and returns correct
        data, computing ``recomputed_items`` items; a further request computes nothing."""
        before = sum(map(len, self.calls))
        out = self.store.get_or_compute(inputs=INPUTS, **self.kw)
        assert_same(out, features(INPUTS))
        assert sum(map(len, self.calls)) - before == recomputed_items
        assert len(self.lines) == 1, self.lines
        line = self.lines[0]
        assert line.startswith("feature store: entry ")
        assert str(self.entry.path) in line and what in line and problem in line, line
        n_calls = len(self.calls)
        assert_same(self.store.get_or_compute(inputs=INPUTS, **self.kw), features(INPUTS))
        assert len(self.calls) == n_calls and len(self.lines) == 1     # healthy again


def data_offset(path: Path) -> int:
    with open(path, "rb") as fh:
        np.lib.format.read_magic(fh)
        np.lib.format.read_array_header_1_0(fh)
        return fh.tell()


def overwrite_data(path: Path, make) -> None:
    """Replace the array data in place with ``make(n_bytes)`` (size and header unchanged)."""
    off = data_offset(path)
    n = path.stat().st_size - off
    with open(path, "r+b") as fh:
        fh.seek(off)
        fh.write(make(n))


# --------------------------------------------------------------------------- damaged entry
@pytest.mark.fault(area=AREA, case="random bytes written into a cached array of the right size",
                   before=SILENT, after="checksum mismatch logged (entry, array); entry "
                   "recomputed; correct data returned")
def test_random_bytes_in_array(tmp_path):
    s = Setup(tmp_path)
    overwrite_data(s.entry.path / "y.npy", lambda n: np.random.default_rng(1).bytes(n))
    s.recovers("array 'y.npy'", "checksum mismatch", recomputed_items=10)


@pytest.mark.fault(area=AREA, case="zeros written into a cached array of the right size",
                   before=SILENT, after="checksum mismatch logged (entry, array); entry "
                   "recomputed; correct data returned")
def test_zeros_in_array(tmp_path):
    s = Setup(tmp_path)
    overwrite_data(s.entry.path / "x.npy", bytes)
    s.recovers("array 'x.npy'", "checksum mismatch", recomputed_items=10)


@pytest.mark.fault(area=AREA, case="truncated cached array",
                   before=CRASH + " (numpy: 'Failed to read all data for array')",
                   after="'truncated' logged (entry, array); entry recomputed")
def test_truncated_array(tmp_path):
    s = Setup(tmp_path)
    path = s.entry.path / "y.npy"
    os.truncate(path, path.stat().st_size - 7)
    s.recovers("array 'y.npy'", "is truncated", recomputed_items=10)


@pytest.mark.fault(area=AREA, case="damaged .npy header",
                   before=CRASH + " (numpy: 'Header does not contain the correct keys')",
                   after="'damaged .npy header' logged (entry, array); entry recomputed")
def test_damaged_header(tmp_path):
    s = Setup(tmp_path)
    with open(s.entry.path / "x.npy", "r+b") as fh:
        fh.seek(12)
        fh.write(b"#%&!" * 6)
    s.recovers("array 'x.npy'", "damaged .npy header", recomputed_items=10)


@pytest.mark.fault(area=AREA, case="array shape disagrees with the manifest",
                   before="silent wrong: a 9-row array returned for 10 inputs",
                   after="both shapes logged (entry, array); entry recomputed")
def test_shape_disagrees_with_manifest(tmp_path):
    s = Setup(tmp_path)
    np.save(s.entry.path / "x.npy", np.zeros((9, 2), np.float32))       # a valid .npy
    s.recovers("array 'x.npy'", "holds <f4 (9, 2) but the manifest says <f4 (10, 2)",
               recomputed_items=10)


@pytest.mark.fault(area=AREA, case="invalid manifest JSON",
                   before=CRASH + " (a bare JSONDecodeError)",
                   after="'not valid JSON' logged (entry); entry recomputed")
def test_invalid_manifest_json(tmp_path):
    s = Setup(tmp_path)
    mf = s.entry.path / "manifest.json"
    mf.write_text(mf.read_text()[:-25])
    s.recovers("manifest.json", "is not valid JSON", recomputed_items=10)


@pytest.mark.fault(area=AREA, case="cached array file missing",
                   before="crash: FileNotFoundError from np.load, nothing recomputed",
                   after="'is missing' logged (entry, array); entry recomputed")
def test_missing_array(tmp_path):
    s = Setup(tmp_path)
    (s.entry.path / "y.npy").unlink()
    s.recovers("array 'y.npy'", "is missing", recomputed_items=10)


@pytest.mark.fault(area=AREA, case="item_digests.npy missing",
                   before="silently no longer a row source: its subsets were recomputed",
                   after="'is missing' logged; digests recomputed from the inputs (no "
                   "encoding); subsets served from the entry again")
def test_missing_item_digests(tmp_path):
    s = Setup(tmp_path)
    (s.entry.path / "item_digests.npy").unlink()
    s.recovers("array 'item_digests.npy'", "is missing; recomputing it from the inputs",
               recomputed_items=0)
    sub = s.store.get_or_compute_entry(inputs=INPUTS[3:8], **s.kw)
    assert sub.path == s.entry.path and sub.rows is not None and len(s.calls) == 3
    assert_same(sub.load(), features(INPUTS[3:8]))


@pytest.mark.fault(area=AREA, case="entry damaged after it was returned, then "
                   "StoreEntry.load() (no compute function at hand)",
                   before=SILENT + " (or numpy crashes unnamed)",
                   after="StoreError (a ValueError) naming entry, array and what to do")
def test_load_only_path_raises_named_error(tmp_path):
    s = Setup(tmp_path)
    overwrite_data(s.entry.path / "y.npy", bytes)
    with pytest.raises(StoreError) as err:
        s.entry.load()
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert str(s.entry.path) in msg and "'y.npy'" in msg and "checksum mismatch" in msg
    assert "Delete the folder" in msg and "rerun get_or_compute()" in msg
    (s.entry.path / "manifest.json").write_text("{")
    with pytest.raises(StoreError, match="manifest.json is not valid JSON"):
        s.store.lookup(**KEY, inputs_sha256=s.entry.manifest["inputs_sha256"])


# --------------------------------------------------------------------------- damaged donors
@pytest.mark.fault(area=AREA, case="damaged full-split entry used as donor for a subset",
                   before="silent wrong: the subset is served the damaged rows",
                   after="donor logged as damaged and skipped; the subset is computed; "
                   "correct data")
def test_damaged_donor_for_a_subset(tmp_path):
    s = Setup(tmp_path)
    overwrite_data(s.entry.path / "x.npy", bytes)
    sub = s.store.get_or_compute_entry(inputs=INPUTS[2:7], **s.kw)
    assert sub.path != s.entry.path and sub.rows is None        # not served from the donor
    assert s.calls[3:] == [INPUTS[2:6], INPUTS[6:7]]            # computed, 5 items
    assert_same(sub.load(), features(INPUTS[2:7]))
    assert len(s.lines) == 1 and str(s.entry.path) in s.lines[0]
    assert "'x.npy' checksum mismatch" in s.lines[0] and "not reusing its rows" in s.lines[0]


@pytest.mark.fault(area=AREA, case="damaged entry used as donor of rows in a partial "
                   "recompute", before="silent wrong: damaged rows copied into the new entry",
                   after="donor logged as damaged and skipped; every item computed; "
                   "correct data")
def test_damaged_donor_for_a_partial_recompute(tmp_path):
    s = Setup(tmp_path)
    overwrite_data(s.entry.path / "y.npy", lambda n: np.random.default_rng(2).bytes(n))
    mixed = INPUTS[:4] + ["a new utterance"]
    out = s.store.get_or_compute(inputs=mixed, **s.kw)
    assert_same(out, features(mixed))
    assert sum(map(len, s.calls[3:])) == 5                      # nothing reused
    assert len(s.lines) == 1 and "'y.npy' checksum mismatch" in s.lines[0]
    healthy = Setup(tmp_path / "healthy")                        # control: rows are reused
    healthy.store.get_or_compute(inputs=mixed, **healthy.kw)
    assert healthy.calls[3:] == [["a new utterance"]]


@pytest.mark.fault(area=AREA, case="finished chunk of a killed run damaged before the rerun",
                   before="silent wrong: the damaged chunk is concatenated into the entry",
                   after="chunk logged as damaged and recomputed alone; correct data")
def test_damaged_chunk_on_resume(tmp_path):
    calls, lines = [], []
    store = FeatureStore(tmp_path, log=lines.append)

    class Crash(BaseException):
        """Stands for a kill mid-run."""

    def crash_on_third(batch):
        if len(calls) == 2:
            raise Crash
        return counting(calls)(batch)

    kw = dict(KEY, chunk_size=CHUNK, progress=False, inputs=INPUTS)
    with pytest.raises(Crash):
        store.get_or_compute(compute=crash_on_third, **kw)
    parts = next(tmp_path.rglob("parts"))
    overwrite_data(parts / "000000000.x.npy", bytes)
    out = store.get_or_compute(compute=counting(calls), **kw)
    assert_same(out, features(INPUTS))
    assert calls[2:] == [INPUTS[0:4], INPUTS[8:10]]              # chunk 0 again, chunk 2
    assert len(lines) == 1 and "chunk file 'parts/000000000.x.npy' checksum mismatch" in lines[0]
    assert str(parts.parent) in lines[0] and "recomputing that chunk" in lines[0]


# --------------------------------------------------------------------------- processes
def _worker(root: str, role: str, sync: str) -> None:
    """One process of the concurrency tests (run through ``python -c``)."""
    sync_dir = Path(sync)
    calls_file = sync_dir / "calls.jsonl"

    def compute(batch):
        with open(calls_file, "a") as fh:
            fh.write(json.dumps(list(batch)) + "\n")
        if role == "killable" and len(calls_file.read_text().splitlines()) == 2:
            (sync_dir / "in-second-chunk").touch()
            time.sleep(600)                                       # killed here
        time.sleep(0.5 if role == "concurrent" else 0.0)
        return features(batch)

    if role == "concurrent":
        (sync_dir / f"ready-{os.getpid()}").touch()
        while not (sync_dir / "go").exists():
            time.sleep(0.005)
    t0 = time.time()
    out = FeatureStore(root, log=lambda m: print(m, flush=True)).get_or_compute(
        inputs=INPUTS, compute=compute, chunk_size=CHUNK, progress=False, **KEY)
    np.savez(sync_dir / f"out-{os.getpid()}.npz", window=np.array([t0, time.time()]), **out)


def _spawn(root: Path, role: str, sync: Path) -> subprocess.Popen:
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]; "
            f"import test_store_faults as t; t._worker({str(root)!r}, {role!r}, {str(sync)!r})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(cond, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.fault(area=AREA, case="two processes fill the same entry with a cold cache",
                   before="crash every time: both encode the entry and the first to finish "
                   "deletes the shared parts/ folder under the other",
                   after="per-entry flock: one computes, the other waits and loads; both get "
                   "identical correct arrays; compute runs once")
def test_two_concurrent_writers(tmp_path):
    root, sync = tmp_path / "fs", tmp_path / "sync"
    sync.mkdir()
    procs = [_spawn(root, "concurrent", sync) for _ in range(2)]
    try:
        _wait_for(lambda: len(list(sync.glob("ready-*"))) == 2, 120, "both workers")
        (sync / "go").touch()
        logs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], logs
    outs = [np.load(f) for f in sorted(sync.glob("out-*.npz"))]
    assert len(outs) == 2
    for out in outs:
        assert_same({k: out[k] for k in ("x", "y")}, features(INPUTS))
    calls = [json.loads(line) for line in (sync / "calls.jsonl").read_text().splitlines()]
    assert sorted(sum(calls, [])) == sorted(INPUTS)               # each item computed once
    (a0, a1), (b0, b1) = (out["window"] for out in outs)
    assert max(a0, b0) < min(a1, b1)                              # the calls did overlap
    assert sum("being written by another process; waiting" in log for log in logs) == 1, logs


@pytest.mark.fault(area=AREA, case="writer process killed (SIGKILL) mid-compute",
                   before="finished chunks were reused, but unchecked and with no lock "
                   "between processes",
                   after="the dead writer's lock is released by the OS; the rerun verifies "
                   "and reuses its finished chunk and computes the rest; correct data")
def test_killed_writer_resumes(tmp_path):
    root, sync = tmp_path / "fs", tmp_path / "sync"
    sync.mkdir()
    proc = _spawn(root, "killable", sync)
    try:
        _wait_for(lambda: (sync / "in-second-chunk").exists(), 120, "the second chunk")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    parts = next(root.rglob("parts"))
    assert (parts / "000000000.done").exists() and not (parts / "000000004.done").exists()
    calls, lines = [], []
    t0 = time.perf_counter()
    out = FeatureStore(root, log=lines.append).get_or_compute(
        inputs=INPUTS, compute=counting(calls), chunk_size=CHUNK, progress=False, **KEY)
    assert time.perf_counter() - t0 < 30                           # the lock did not block
    assert calls == [INPUTS[4:8], INPUTS[8:10]]                    # chunk 0 reused
    assert_same(out, features(INPUTS))
    assert lines == []
    entry = parts.parent
    assert not parts.exists() and not list(entry.glob(".staging-*"))
    assert (entry.parent / f"{entry.name}.lock").exists()


# --------------------------------------------------------------------------- older entries
def test_entry_without_checksums_loads_and_is_backfilled(tmp_path):
    """An entry written before checksums: shapes verified, checksums recorded (logged once);
    damage after that is caught."""
    s = Setup(tmp_path)
    mf = s.entry.path / "manifest.json"
    manifest = json.loads(mf.read_text())
    for key in ("checksums", "dtypes"):
        del manifest[key]
    mf.write_text(json.dumps(manifest))
    assert_same(s.store.get_or_compute(inputs=INPUTS, **s.kw), features(INPUTS))
    assert len(s.calls) == 3 and len(s.lines) == 1
    assert "written without checksums" in s.lines[0] and str(s.entry.path) in s.lines[0]
    backfilled = json.loads(mf.read_text())
    assert set(backfilled["checksums"]) == {"x.npy", "y.npy", "item_digests.npy"}
    assert backfilled["checksums"] == s.entry.manifest["checksums"]
    assert backfilled["dtypes"] == {"x": "<f4", "y": "<f2"}
    s.lines.clear()
    overwrite_data(s.entry.path / "x.npy", bytes)
    s.recovers("array 'x.npy'", "checksum mismatch", recomputed_items=10)


def test_entry_without_checksums_still_has_shapes_checked(tmp_path):
    s = Setup(tmp_path)
    mf = s.entry.path / "manifest.json"
    manifest = json.loads(mf.read_text())
    del manifest["checksums"], manifest["dtypes"]
    mf.write_text(json.dumps(manifest))
    path = s.entry.path / "y.npy"
    os.truncate(path, path.stat().st_size - 3)
    s.recovers("array 'y.npy'", "is truncated", recomputed_items=10)


# --------------------------------------------------------------------------- verification cost
def test_verified_once_per_process_unless_changed(tmp_path, monkeypatch):
    """Repeated loads of an unchanged file only stat it; a changed file is verified again;
    a file changed within the last 2 s is verified on every load."""
    s = Setup(tmp_path)
    summed = []

    def crc32(data, value=0):
        summed.append(memoryview(data).nbytes)
        return store_mod.zlib.crc32(data, value)

    monkeypatch.setattr(store_mod, "_crc32", crc32)
    monkeypatch.setattr(store_mod, "_RACY_NS", 10**18)    # as if just written
    s.entry.load()
    s.entry.load()
    assert sum(summed) == 2 * (10 * 2 * 4 + 10 * 12 * 2)   # checksummed on every load
    monkeypatch.setattr(store_mod, "_RACY_NS", -1)        # as if written long ago
    summed.clear()
    s.entry.load()
    assert sum(summed) == 10 * 2 * 4 + 10 * 12 * 2
    summed.clear()
    s.entry.load(mmap=True)
    s.entry.load()
    assert summed == []                                   # verified: stat only
    overwrite_data(s.entry.path / "y.npy", bytes)
    os.utime(s.entry.path / "y.npy", ns=(1, 1))           # even with an old mtime: ctime moved
    with pytest.raises(StoreError, match="'y.npy' checksum mismatch"):
        s.entry.load()
    store_mod.reset_verification_cache()
