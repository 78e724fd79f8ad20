"""XMEI-Qwen on IEMOCAP-DA: SmolLM2-135M-Instruct + LoRA (cpu preset), text + captions,
trained on a random draw of the train split and evaluated on a random draw of the test split;
dialogue-act six metrics, emotion ACC / weighted F1 (unknown emotions excluded), the share of
unparsable answers, train tokens/s, peak RSS and the machine. A small draw is a pipeline
check, not a result comparable with the papers' full-data numbers.

    .venv/bin/python benchmarks/xmei_qwen.py --n-train 200 --n-test 150 --seeds 0 --threads 1

On a GPU the same code path runs with ``--device cuda --set precision=bf16``.
Writes outputs/xmei/benchmarks/xmei_qwen-<n_train>-<n_test>.json (and the run folder under
outputs/xmei/IEMOCAP-DA/).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from machine import machine_info, machine_line  # noqa: E402
from mir_core import paths  # noqa: E402
from mir_core.xmei import from_iemocap, preset, run_xmei  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--name", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    sets = {}
    for p in a.set:
        k, v = p.split("=", 1)
        try:
            sets[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            sets[k] = v
    cfg = preset(a.preset, **sets)
    t0 = time.perf_counter()
    train = from_iemocap("train", aspects=cfg.caption_aspects).subset(a.n_train, seed=0)
    test = from_iemocap("test", aspects=cfg.caption_aspects).subset(a.n_test, seed=0)
    name = a.name or f"bench-{a.preset}-n{len(train)}-t{len(test)}"
    res = run_xmei(train, test, cfg, seeds=tuple(a.seeds), name=name, device=a.device,
                   progress=False)
    wall = time.perf_counter() - t0
    out = {"command": "benchmarks/xmei_qwen.py " + " ".join(sys.argv[1:] if argv is None
                                                             else argv),
           "machine": machine_info(), "machine_line": machine_line(), "wall_s": round(wall, 1),
           "n_train_drawn": len(train), "n_train_fit": res.config["n_train_fit"],
           "n_test": len(test), "unknown_emotions": res.config["unknown_emotions"],
           "folder": str(res.folder), "summary": res.summary,
           "per_seed": [{k: r.metrics[k] for k in ("seed", "intent", "emotion",
                                                    "unparsed_share", "train", "precision",
                                                    "peak_rss_mb", "generate_seconds",
                                                    "loss_first", "loss_last")}
                        for r in res.seeds]}
    dest = paths.output_dir() / "xmei" / "benchmarks"
    dest.mkdir(parents=True, exist_ok=True)
    f = dest / f"{name}.json"
    f.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(out, indent=2, default=str))
    print(f"written: {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
