"""Shared fixtures: real data from the mirror (offline), caches in a session temp folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MIRROR = REPO.parent / "shared" / "data" / "lgsrr"


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory):
    os.environ.setdefault("MIR_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "MIR_DATA_MIRROR" not in os.environ and DEFAULT_MIRROR.exists():
        os.environ["MIR_DATA_MIRROR"] = str(DEFAULT_MIRROR)
    base = tmp_path_factory.mktemp("mir")
    os.environ["MIR_DATA_DIR"] = str(base / "data")
    os.environ["MIR_CACHE_DIR"] = str(base / "cache")
    os.environ["MIR_OUTPUT_DIR"] = str(base / "outputs")
    yield


@pytest.fixture(scope="session")
def data_root(_offline_env) -> Path:
    """The real MIntRec2.0 and IEMOCAP-DA release files, checksums verified."""
    from mir_core.data import download
    root = Path(os.environ["MIR_DATA_DIR"]) / "lgsrr"
    for name in ("MIntRec2.0", "IEMOCAP-DA"):
        download(name, root, log=lambda *_: None)
    return root


@pytest.fixture
def small_root(data_root, tmp_path) -> Path:
    """A copy of MIntRec2.0 and IEMOCAP-DA cut to the first 40 rows of each file, to corrupt."""
    from mir_core.data import DATASETS
    for name in ("MIntRec2.0", "IEMOCAP-DA"):
        for rel in DATASETS[name].files():
            dst = tmp_path / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            lines = (data_root / rel).read_text(encoding="utf-8").splitlines(keepends=True)
            dst.write_text("".join(lines[:41]), encoding="utf-8")
    return tmp_path


def write_precision_choice(cache_dir: Path, precision: str, threads: int = 1,
                           encoder: str = "minilm-l6") -> None:
    """Write the entry ``precision="auto"`` reads from ``cache_dir/precision.json`` on this
    machine (CPU, torch, encoder, threads), so a test resolves auto without timing."""
    import json

    import torch

    from mir_core.machine import cpu_facts
    from mir_core.precision import CACHE_FILE, cache_key
    cpu = cpu_facts().ident
    entry = {"precision": precision, "reason": "written by the test", "fp32_seconds": 1.0,
             "bf16_seconds": 2.0 if precision == "fp32" else 0.5, "cpu": cpu,
             "torch": torch.__version__, "encoder": encoder, "threads": threads}
    path = Path(cache_dir) / CACHE_FILE
    entries = json.loads(path.read_text()) if path.exists() else {}
    entries[cache_key(cpu, torch.__version__, encoder, threads)] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries))


def edit_line(path: Path, line_no: int, fn) -> None:
    """Apply fn to the tab-split fields of 1-based line ``line_no`` of a TSV file."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[line_no - 1].rstrip("\n").split("\t")
    lines[line_no - 1] = "\t".join(fn(fields)) + "\n"
    path.write_text("".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------- fault table
# With MIR_FAULT_TABLE=<file.json>, every test marked @pytest.mark.fault records its case and
# outcome there (tools/fault_table.py renders the table of docs/RESULTS.md from it).
_FAULTS: dict = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    mark = item.get_closest_marker("fault")
    if mark is None or not os.environ.get("MIR_FAULT_TABLE"):
        return
    if report.when == "call" or (report.failed and report.when == "setup"):
        kw = {k: str(v) for k, v in mark.kwargs.items()}
        row = _FAULTS.setdefault(f"{kw.get('area')}|{kw.get('case')}",
                                 {**kw, "tests": 0, "passed": 0})
        row["tests"] += 1
        row["passed"] += int(report.passed)


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("MIR_FAULT_TABLE")
    if path and _FAULTS:
        import json
        Path(path).write_text(json.dumps(list(_FAULTS.values()), indent=2))
