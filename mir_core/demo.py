"""The main job: every numbered notebook, in order, headless (``make demo``).

The notebooks' default parameters, except the smaller grids of :data:`DEMO`, on real data:
meaningful results on a 2-core CPU in minutes, two notebooks at a time (``jobs``);
``quick`` uses the tests' small parameters instead. Executed copies land in ``<out>/notebooks/`` (``out`` None: $MIR_OUTPUT_DIR or
``outputs/`` at the project root), each notebook's records in
``<out>/<notebook stem>/records.json``.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from . import paths
from .notebooks import NOTEBOOK_DIR, run_notebook

# Small parameters for a fast end-to-end pass (the tests use the same ones).
QUICK = {
    "01": {"datasets": ["MIntRec2.0"]},
    "02": {"sample_size": 3, "steps": [1, 3], "cue_rounds": 1, "cue_background_n": 2,
           "rank_mode": "loglik", "label_limit": 0,
           "max_new_tokens": {"cues": 32, "describe": 24, "rank": 24, "labels": 24}},
    "03": {"n_items": 8, "n_clips": 3, "n_frames": 4, "token_level": True},
    "04": {"methods": ["text", "lgsrr"], "fusions": ["official"], "seeds": [0],
           "max_train": 400, "max_eval": 200, "overrides": {"epochs": 2}},
    "05": {"datasets": ["MIntRec2.0"], "tables": ["2"], "variants": ["not"], "seeds": [0, 1],
           "max_train": 200, "max_eval": 100, "overrides": {"epochs": 1}},
    # 06 reuses the newest LGSRR run (04's above); without one it trains this small one
    "06": {"fallback": {"max_train": 240, "max_eval": 120, "seeds": [0],
                        "overrides": {"epochs": 3}},
           "attribution_steps": 8},
    "07": {"n_train": 8, "n_test": 3, "overrides": {"max_steps": 2, "max_new_tokens": 16,
                                                    "precision": "bf16"},
           "n_show": 3, "clip_train": 4, "clip_test": 2, "clip_overrides": {"max_steps": 1}},
}


# What `make demo` changes from the notebooks' own defaults, and why: the defaults are the
# full grids a researcher opens in JupyterLab; the demo keeps their data and settings but
# fewer rows, so that a fresh clone (environment included) runs every notebook in about 15
# minutes on a 2-core CPU (docs/RESULTS.md, "make demo"). Printed at the start of a demo.
# MIntRec2.0 with 2,000 of its 6,165 train utterances (label-stratified, seed 0) and the whole
# dev and test splits: 03 encodes exactly what 04 and 05 train on, once.
DEMO_TRAIN = 2000
DEMO = {
    "03": {"n_items": DEMO_TRAIN},                   # dev (1,106) and test (2,033) whole
    "04": {"fusions": ["official"], "max_train": DEMO_TRAIN},   # eq12: 05's "fusion" table
    "05": {"tables": ["2"], "max_train": DEMO_TRAIN},  # reuses 04's rows; Tables 5, 6, 8: tables=[...]
    "07": {"overrides": {"max_steps": 20}, "n_test": 40},     # LoRA SFT: 20 steps, not 40
}
# The parameter that sets a notebook's torch threads (the rest follow OMP_NUM_THREADS).
THREAD_PARAMS = {"02": "num_threads", "07": "threads"}
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

# What a notebook needs to have run before it (the rest share only 01's downloaded data):
# 04 trains on 03's cached features, 05 reuses 04's finished rows, 06 inspects 04's run.
NEEDS = {"02": ("01",), "03": ("01",), "04": ("03",), "05": ("04",), "06": ("04",),
         "07": ("01",)}


def notebooks(only: list[str] | None = None) -> list[Path]:
    found = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if p.name[:2] in {o.zfill(2) for o in only}]
    return found


def run_demo(out: str | Path | None = None, quick: bool = False, only: list[str] | None = None,
             extra: dict[str, dict] | None = None, jobs: int = 1) -> list[Path]:
    """Execute the notebooks headless; ``jobs`` > 1 runs up to that many kernels at once,
    each notebook starting when the ones it needs (:data:`NEEDS`) have finished, every
    kernel on one CPU thread (``OMP_NUM_THREADS=1``; a 2-core CPU then runs two notebooks
    side by side instead of one on two threads). A failed notebook stops the demo once the
    running ones end, and is raised."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from .machine import cpu_facts

    out = paths.output_dir(out)
    found = {nb.name[:2]: nb for nb in notebooks(only)}
    seconds: dict[str, float] = {}
    done: dict[str, Path] = {}
    t0 = time.perf_counter()

    def params_of(key: str) -> dict:
        params = dict(QUICK.get(key, {})) if quick else dict(DEMO.get(key, {}))
        if jobs > 1 and key in THREAD_PARAMS:
            params[THREAD_PARAMS[key]] = 1
        params.update((extra or {}).get(key, {}))
        return params

    def one(key: str) -> Path:
        t = time.perf_counter()
        path = run_notebook(str(found[key]), params_of(key), output_dir=out)
        seconds[found[key].name] = round(time.perf_counter() - t, 1)
        print(f"{found[key].name}: {seconds[found[key].name]:.0f} s "
              f"(at {time.perf_counter() - t0:.0f} s)", flush=True)
        return path

    saved_env = {k: os.environ.get(k) for k in THREAD_ENV}
    if not quick:
        for key in found:
            if DEMO.get(key):
                print(f"demo: {found[key].name} with {DEMO[key]} (its defaults otherwise)")
    if jobs > 1:
        os.environ.update({k: "1" for k in THREAD_ENV})   # the kernels inherit it
        print(f"demo: up to {jobs} notebooks at once, one thread each; "
              + ", ".join(f"{k} after {' and '.join(v)}" for k, v in NEEDS.items()
                          if k in found and v != ("01",)), flush=True)
    failed: list[tuple[str, BaseException]] = []
    try:
        with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
            running: dict = {}
            left = list(found)
            while left or running:
                ready = [k for k in left if not failed and all(
                    d in done or d not in found for d in NEEDS.get(k, ()))]
                for k in ready[:max(jobs, 1) - len(running)]:
                    running[pool.submit(one, k)] = k
                    left.remove(k)
                if not running:
                    break                                  # a failure left the rest unready
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    k = running.pop(f)
                    try:
                        done[k] = f.result()
                    except BaseException as e:             # noqa: BLE001 - raised below
                        failed.append((k, e))
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    total = round(time.perf_counter() - t0, 1)
    cpu = cpu_facts().ident
    out.mkdir(parents=True, exist_ok=True)
    # the timings with their machine, for docs/RESULTS.md and the README
    (out / "demo_times.json").write_text(json.dumps(
        {"cpu": cpu, "python": platform.python_version(), "quick": quick, "jobs": jobs,
         "profile": "quick" if quick else "demo", "notebooks": seconds,
         "failed": [k for k, _ in failed], "total_seconds": total}, indent=2))
    if failed:
        key, err = failed[0]
        raise RuntimeError(f"demo: notebook {found[key].name} failed ({type(err).__name__}); "
                           f"its partial copy is in {out}/notebooks/") from err
    print(f"{len(done)} notebooks in {total:.0f} s on {cpu}; outputs in {out}/")
    return [done[k] for k in found if k in done]
