"""Command line for batch users.

    python -m mir_core download --dataset MIntRec2.0
    python -m mir_core train --dataset MIntRec2.0 --method lgsrr --preset cpu --seeds 0 1 2 3 4
    python -m mir_core train --dataset IEMOCAP-DA --method text --preset cpu
    python -m mir_core train ... --fusion released --set lr=5e-4 proj_dim=768
    accelerate launch -m mir_core train --dataset MIntRec2.0 --preset paper   # several GPUs
    python -m mir_core demo [--quick]       # all notebooks headless (what `make demo` runs)
"""
from __future__ import annotations

import argparse
import ast
import json
import sys


def _parse_sets(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise SystemExit(f"--set expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mir_core", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("download", help="fetch a dataset (falls back to $MIR_DATA_MIRROR)")
    d.add_argument("--dataset", nargs="+", default=["MIntRec2.0", "IEMOCAP-DA"])
    d.add_argument("--dest", default=None)

    t = sub.add_parser("train", help="train + test over seeds, write a run folder")
    t.add_argument("--dataset", default="MIntRec2.0")
    t.add_argument("--method", default="lgsrr", choices=["lgsrr", "text"])
    t.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    t.add_argument("--fusion", default="paper", choices=["paper", "released", "sum"])
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    t.add_argument("--encoder", default=None, help="text encoder (default: the preset's)")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="TrainConfig overrides, e.g. lr=1e-4 epochs=3")
    t.add_argument("--ablate", nargs="*", default=[], metavar="KEY=VALUE",
                   help="LGSRR switches, e.g. use_inconsistency=False")
    t.add_argument("--max-train", type=int, default=None)
    t.add_argument("--max-eval", type=int, default=None)
    t.add_argument("--name", default=None, help="run folder name")
    t.add_argument("--data-root", default=None)
    t.add_argument("--out", default=None, help="output root (default $MIR_OUTPUT_DIR or outputs)")
    t.add_argument("--no-resume", action="store_true")

    m = sub.add_parser("demo", help="execute the notebooks in order with papermill")
    m.add_argument("--quick", action="store_true", help="small parameters (as the tests)")
    m.add_argument("--out", default="outputs")
    m.add_argument("--only", nargs="*", default=None, help="notebook numbers, e.g. 01 04")

    a = ap.parse_args(argv)
    if a.cmd == "download":
        from .data import download
        for name in a.dataset:
            print(download(name, a.dest))
        return 0
    if a.cmd == "train":
        from .training import RunSpec, run
        overrides = _parse_sets(a.set)
        if a.encoder:
            overrides["encoder"] = a.encoder
        spec = RunSpec(dataset=a.dataset, method=a.method, preset=a.preset, fusion=a.fusion,
                       seeds=tuple(a.seeds), overrides=overrides,
                       ablation=_parse_sets(a.ablate), max_train=a.max_train,
                       max_eval=a.max_eval, name=a.name)
        summary = run(spec, data_root=a.data_root, out_dir=a.out, resume=not a.no_resume)
        print(json.dumps({k: summary[k] for k in ("folder", "test")}, indent=2))
        return 0
    if a.cmd == "demo":
        from .demo import run_demo
        run_demo(out=a.out, quick=a.quick, only=a.only)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
