"""Command line for batch users.

    python -m mir_core download --dataset MIntRec2.0
    python -m mir_core train --dataset MIntRec2.0 --method lgsrr --preset cpu --seeds 0 1 2 3 4
    python -m mir_core train --dataset IEMOCAP-DA --method text --preset cpu-ft
    python -m mir_core train ... --fusion eq12 --set lr=5e-4 proj_dim=768
    python -m mir_core train ... --ablate use_inconsistency=False
    accelerate launch -m mir_core train --dataset MIntRec2.0 --preset official   # GPUs
    python -m mir_core ablate --dataset MIntRec2.0 --tables 2 8 --seeds 0 1 2 3 4 --preset cpu
    python -m mir_core ablate --dataset IEMOCAP-DA --variants no_rank eq12 --seeds 0 1 2
    python -m mir_core demo [--quick]       # all notebooks headless (what `make demo` runs)

Expected errors (bad settings, data files, a busy or mismatching run folder) print one line
and exit with status 2; --debug shows the full traceback instead.

Data layout: files go under <data root>/ as the release has them, e.g.
<root>/data_text/MIntRec2.0/{train,dev,test}.tsv; your own dataset: see
docs/BRING_YOUR_OWN_DATA.md.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys

from .data import DataError
from .models import methods
from .models.lgsrr import FUSIONS
from .modelpack import MissingWeightsError
from .training import PRESETS, ConfigError, RunError

# Errors a user can cause and fix: one line, exit status 2. Anything else is a bug and
# keeps its traceback.
EXPECTED = (DataError, ConfigError, RunError, MissingWeightsError, FileNotFoundError,
            KeyError)


def _parse_sets(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ConfigError(f"--set/--ablate expect key=value, got {p!r}")
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

    d = sub.add_parser("download", help="fetch a dataset (falls back to $MIR_DATA_MIRROR)",
                       description="Fetch a released dataset into <dest> (default "
                       "$MIR_DATA_DIR/lgsrr), checksums verified. Your own data is not "
                       "downloaded: put its files under the data root as "
                       "docs/BRING_YOUR_OWN_DATA.md describes.")
    d.add_argument("--dataset", nargs="+", default=["MIntRec2.0", "IEMOCAP-DA"])
    d.add_argument("--dest", default=None)

    t = sub.add_parser("train", help="train + test over seeds, write a run folder")
    t.add_argument("--dataset", default="MIntRec2.0")
    t.add_argument("--method", default="lgsrr", choices=methods())
    t.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    t.add_argument("--fusion", default=None, choices=list(FUSIONS),
                   help="LGSRR fusion form (default: official, the released computation)")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    t.add_argument("--encoder", default=None, help="text encoder (default: the preset's)")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="TrainConfig overrides, e.g. lr=1e-4 epochs=3")
    t.add_argument("--ablate", nargs="*", default=[], metavar="KEY=VALUE",
                   help="method options, e.g. use_inconsistency=False relevance=aspects")
    t.add_argument("--max-train", type=int, default=None)
    t.add_argument("--max-eval", type=int, default=None)
    t.add_argument("--name", default=None, help="run folder name")
    t.add_argument("--data-root", default=None,
                   help="folder holding data_text/, data_desc/, data_rank/ "
                        "(default: $MIR_DATA_DIR/lgsrr)")
    t.add_argument("--out", default=None,
                   help="output root (default $MIR_OUTPUT_DIR or outputs/ at the project root)")
    t.add_argument("--fresh", "--no-resume", dest="fresh", action="store_true",
                   help="retrain every seed (default: reuse seeds whose fingerprint matches)")
    t.add_argument("--progress", action="store_true", help="a progress bar per seed")

    b = sub.add_parser("ablate", help="the paper's ablation tables as a multi-seed grid",
                       description="Train the full LGSRR model and the chosen variants over "
                       "seeds (finished seeds with a matching fingerprint are reused, stale "
                       "ones retrained), then write table.md / table.csv with mean ± std, the "
                       "paired per-seed difference to the full model and the paper's numbers "
                       "under <out>/ablations/<dataset>/<preset>/.")
    b.add_argument("--dataset", default="MIntRec2.0")
    b.add_argument("--tables", nargs="*", default=[], help="paper tables: 2 5 6 8 fusion")
    b.add_argument("--variants", nargs="*", default=[],
                   help="variant keys instead of / besides whole tables (see "
                        "mir_core.ablation.VARIANTS), e.g. no_rank eq12")
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    b.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    b.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="TrainConfig overrides for every row, e.g. epochs=3")
    b.add_argument("--metric", default="F1", help="metric of the paired comparison")
    b.add_argument("--max-train", type=int, default=None)
    b.add_argument("--max-eval", type=int, default=None)
    b.add_argument("--data-root", default=None)
    b.add_argument("--out", default=None,
                   help="output root (default $MIR_OUTPUT_DIR or outputs/ at the project root)")
    b.add_argument("--strict", action="store_true",
                   help="refuse stale seeds (fingerprint differs) instead of retraining them")

    m = sub.add_parser("demo", help="execute the notebooks in order with papermill")
    m.add_argument("--quick", action="store_true", help="small parameters (as the tests)")
    m.add_argument("--out", default=None,
                   help="output root (default $MIR_OUTPUT_DIR or outputs/ at the project root)")
    m.add_argument("--only", nargs="*", default=None, help="notebook numbers, e.g. 01 04")

    ap.add_argument("--debug", action="store_true", help="full tracebacks for every error")
    a = ap.parse_args(argv)
    try:
        return _dispatch(a)
    except EXPECTED as e:
        if a.debug:
            raise
        print(f"error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(e: BaseException) -> str:
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(msg.split())


def _dispatch(a) -> int:
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
        options = _parse_sets(a.ablate)
        if a.fusion:
            options["fusion"] = a.fusion
        spec = RunSpec(dataset=a.dataset, method=a.method, preset=a.preset,
                       seeds=tuple(a.seeds), options=options, overrides=overrides,
                       max_train=a.max_train, max_eval=a.max_eval, name=a.name)
        summary = run(spec, data_root=a.data_root, out_dir=a.out, resume=not a.fresh,
                      progress=a.progress)
        print(json.dumps({k: summary[k] for k in ("folder", "test")}, indent=2))
        return 0
    if a.cmd == "ablate":
        from . import ablation
        from .metrics import METRICS
        if a.metric not in METRICS:
            raise ConfigError(f"--metric must be one of {list(METRICS)}, got {a.metric!r}")
        variants = ablation.select(a.tables, a.variants)
        grid = ablation.run_grid(a.dataset, variants, a.seeds, preset=a.preset,
                                 overrides=_parse_sets(a.set), data_root=a.data_root,
                                 out_dir=a.out, stale="error" if a.strict else "retrain",
                                 max_train=a.max_train, max_eval=a.max_eval,
                                 log=lambda *_: None)
        df = ablation.compare(grid, a.metric)
        folder = ablation.save(grid, df, a.out, a.metric)
        print(ablation.markdown(df, grid, a.metric))
        print(f"written: {folder}/table.md, table.csv, results.jsonl")
        return 0
    if a.cmd == "demo":
        from .demo import run_demo
        run_demo(out=a.out, quick=a.quick, only=a.only)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
