"""Table 1 on the CPU preset: text-only, LGSRR (paper fusion) and LGSRR (released fusion),
5 seeds, on MIntRec2.0 and IEMOCAP-DA, with each row's wall time.

    python benchmarks/table1_cpu.py [--datasets MIntRec2.0 IEMOCAP-DA] [--seeds 0 1 2 3 4]
                                   [--set encoder=all-mpnet-base-v2]

Each row is the same as one CLI call, e.g.
    python -m mir_core train --dataset MIntRec2.0 --method lgsrr --fusion paper --preset cpu --seeds 0 1 2 3 4
Writes outputs/benchmarks/table1_cpu.json and .md (mean ± std over seeds, scikit-learn, x100).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mir_core.__main__ import _parse_sets
from mir_core.metrics import METRICS
from mir_core.reference import TABLE1
from mir_core.training import RunSpec, run

ROWS = [("text", "paper"), ("lgsrr", "paper"), ("lgsrr", "released")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["MIntRec2.0", "IEMOCAP-DA"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="outputs/benchmarks")
    ap.add_argument("--tag", default="table1_cpu")
    a = ap.parse_args()
    overrides = _parse_sets(a.set)
    results = []
    for ds in a.datasets:
        for method, fusion in ROWS:
            t0 = time.perf_counter()
            s = run(RunSpec(dataset=ds, method=method, fusion=fusion, preset="cpu",
                            seeds=tuple(a.seeds), overrides=overrides),
                    out_dir=Path(a.out) / a.tag, resume=False)
            cmd = (f"python -m mir_core train --dataset {ds} --method {method} "
                   + (f"--fusion {fusion} " if method == "lgsrr" else "")
                   + "--preset cpu --seeds " + " ".join(map(str, a.seeds))
                   + (" --set " + " ".join(a.set) if a.set else ""))
            results.append({"dataset": ds, "system": method if method == "text" else f"LGSRR ({fusion})",
                            "encoder": s["encoder"], "test": s["test"], "dev": s["dev"],
                            "wall_seconds": round(time.perf_counter() - t0, 1),
                            "feature_seconds": s["feature_seconds"], "command": cmd})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.tag}.json").write_text(json.dumps(results, indent=2))
    lines = []
    for ds in a.datasets:
        lines += [f"\n**{ds}** (test, mean ± std over seeds {a.seeds})\n",
                  "| system | " + " | ".join(METRICS) + " | wall s |",
                  "|---|" + "---|" * (len(METRICS) + 1)]
        for r in (r for r in results if r["dataset"] == ds):
            lines.append(f"| {r['system']} [{r['encoder']}, cpu] | " + " | ".join(
                f"{r['test'][k]['mean']:.2f} ± {r['test'][k]['std']:.2f}" for k in METRICS)
                + f" | {r['wall_seconds']:.0f} |")
        for base in ("MAG-BERT", "MulT", "LGSRR"):
            lines.append(f"| paper: {base} [bert-large, GPU] | " + " | ".join(
                f"{TABLE1[ds][base][k]:.2f}" for k in METRICS) + " | |")
    (out / f"{a.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
