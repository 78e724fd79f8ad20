"""The main job: every numbered notebook, in order, headless (``make demo``).

Default parameters run on real data and give meaningful results on a 2-core CPU in
minutes (features are cached after the first run); ``quick`` uses the tests' small
parameters. Executed copies land in ``<out>/notebooks/`` (``out`` None: $MIR_OUTPUT_DIR or
``outputs/`` at the project root), each notebook's records in
``<out>/<notebook stem>/records.json``.
"""
from __future__ import annotations

import json
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


def notebooks(only: list[str] | None = None) -> list[Path]:
    found = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if p.name[:2] in {o.zfill(2) for o in only}]
    return found


def run_demo(out: str | Path | None = None, quick: bool = False, only: list[str] | None = None,
             extra: dict[str, dict] | None = None) -> list[Path]:
    from .machine import cpu_facts

    out = paths.output_dir(out)
    done, seconds = [], {}
    t0 = time.perf_counter()
    for nb in notebooks(only):
        params = dict(QUICK.get(nb.name[:2], {})) if quick else {}
        params.update((extra or {}).get(nb.name[:2], {}))
        t = time.perf_counter()
        done.append(run_notebook(str(nb), params, output_dir=out))
        seconds[nb.name] = round(time.perf_counter() - t, 1)
        print(f"{nb.name}: {seconds[nb.name]:.0f} s", flush=True)
    total = round(time.perf_counter() - t0, 1)
    cpu = cpu_facts().ident
    print(f"{len(done)} notebooks in {total:.0f} s on {cpu}; outputs in {out}/")
    # the timings with their machine, for docs/RESULTS.md and the README
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_times.json").write_text(json.dumps(
        {"cpu": cpu, "python": platform.python_version(), "quick": quick,
         "notebooks": seconds, "total_seconds": total}, indent=2))
    return done
