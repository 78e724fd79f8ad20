"""Table 1 rows in one setting: text-only, LGSRR `official` and LGSRR `eq12`, over seeds,
on MIntRec2.0 and IEMOCAP-DA, with each row's wall time and, for LGSRR, what the learned
importance weights do (mean alpha per source, learned-vs-LLM aspect order on train).

    python benchmarks/table1.py --preset cpu    [--datasets MIntRec2.0 IEMOCAP-DA] [--seeds 0 1 2 3 4]
    python benchmarks/table1.py --preset cpu-ft --datasets MIntRec2.0 --set encoder=all-mpnet-base-v2

Each row is the same as one CLI call, e.g.
    python -m mir_core train --dataset MIntRec2.0 --method lgsrr --fusion eq12 --preset cpu --seeds 0 1 2 3 4
Writes outputs/benchmarks/<tag>.json and .md (mean ± std over seeds, scikit-learn, x100).
Finished rows are reused when their fingerprints match (pass --fresh to retrain).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info, machine_line  # noqa: E402

from mir_core.__main__ import _parse_sets  # noqa: E402
from mir_core.data import load_split  # noqa: E402
from mir_core.importance import run_importance  # noqa: E402
from mir_core.metrics import METRICS  # noqa: E402
from mir_core.reference import TABLE1  # noqa: E402
from mir_core.training import RunSpec, run  # noqa: E402

ROWS = [("text", None), ("lgsrr", "official"), ("lgsrr", "eq12")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--datasets", nargs="+", default=["MIntRec2.0", "IEMOCAP-DA"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--rows", nargs="+", default=["text", "official", "eq12"],
                    help="text, official, eq12")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--ablate", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="outputs/benchmarks")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args()
    tag = a.tag or f"table1_{a.preset}"
    overrides, extra = _parse_sets(a.set), _parse_sets(a.ablate)
    print(machine_line(), flush=True)
    results = []
    for ds in a.datasets:
        train = load_split(ds, "train")
        for method, fusion in ROWS:
            if (fusion or method) not in a.rows:
                continue
            options = {"fusion": fusion, **extra} if fusion else {}
            t0 = time.perf_counter()
            s = run(RunSpec(dataset=ds, method=method, preset=a.preset, seeds=tuple(a.seeds),
                            options=options, overrides=overrides),
                    out_dir=Path(a.out) / tag, resume=not a.fresh)
            cmd = (f"python -m mir_core train --dataset {ds} --method {method} "
                   + (f"--fusion {fusion} " if fusion else "")
                   + f"--preset {a.preset} --seeds " + " ".join(map(str, a.seeds))
                   + (" --set " + " ".join(a.set) if a.set else "")
                   + (" --ablate " + " ".join(a.ablate) if a.ablate and fusion else ""))
            row = {"dataset": ds, "system": method if method == "text" else f"LGSRR ({fusion})",
                   "encoder": s["encoder"], "test": s["test"], "dev": s["dev"],
                   "per_seed_F1": [r["F1"] for r in s["per_seed"]],
                   "wall_seconds": round(time.perf_counter() - t0, 1),
                   "train_seconds_total": s["train_seconds_total"],
                   "seconds_per_epoch": round(sum(r["seconds_per_epoch"] for r in s["per_seed"])
                                              / len(s["per_seed"]), 2),
                   "feature_seconds": s["feature_seconds"], "command": cmd}
            if method == "lgsrr":
                row["importance"] = {k: v for k, v in run_importance(s, train).items()
                                     if k != "per_seed"}
            results.append(row)
            print(json.dumps({k: row[k] for k in ("dataset", "system", "wall_seconds")}
                             | {"F1": s["test"]["F1"]}), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps({"machine": machine_info(), "rows": results},
                                                indent=2))
    lines = [f"Machine: {machine_line()}"]
    for ds in a.datasets:
        lines += [f"\n**{ds}** (test, mean ± std over seeds {a.seeds}, preset `{a.preset}`)\n",
                  "| system | " + " | ".join(METRICS) + " | s/epoch | wall s |",
                  "|---|" + "---|" * (len(METRICS) + 2)]
        for r in (r for r in results if r["dataset"] == ds):
            lines.append(f"| {r['system']} [{r['encoder']}, {a.preset}] | " + " | ".join(
                f"{r['test'][k]['mean']:.2f} ± {r['test'][k]['std']:.2f}" for k in METRICS)
                + f" | {r['seconds_per_epoch']:.2f} | {r['wall_seconds']:.0f} |")
        for base in ("MAG-BERT", "MulT", "LGSRR"):
            if ds in TABLE1:
                lines.append(f"| paper: {base} [bert-large, GPU] | " + " | ".join(
                    f"{TABLE1[ds][base][k]:.2f}" for k in METRICS) + " | | |")
        imp = [r for r in results if r["dataset"] == ds and "importance" in r]
        if imp:
            lines += ["", "| system | mean α test (T/A/E/I) | mean α train | train: learned = LLM "
                      "order (exact / top-1 / τ) |", "|---|---|---|---|"]
            for r in imp:
                i = r["importance"]
                fmt = lambda d: " / ".join(f"{d[s]:.4f}" for s in "TAEI")  # noqa: E731
                agree = i.get("train_vs_llm")
                lines.append(f"| {r['system']} | {fmt(i['mean_alpha_test'])} | "
                             f"{fmt(i['mean_alpha_train'])} | "
                             + (f"{agree['exact']:.3f} / {agree['top1']:.3f} / "
                                f"{agree['mean_tau']:+.3f}" if agree else "n/a") + " |")
    (out / f"{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
