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
    python -m mir_core annotate --dataset MIntRec2.0 --steps 1 2 3 --backend openai \
        --base-url http://127.0.0.1:8000/v1 --model NAME --concurrency 4   # key: $MIR_LLM_API_KEY
    python -m mir_core annotate --steps 3 --backend local --limit 40      # offline SmolLM2

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
import os
import sys

from .data import DataError, one_line
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
    t.add_argument("--method", default="lgsrr", choices=methods("classifier"))
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
                       description="Train the chosen variants and the rows they are "
                       "paired with (the full LGSRR model; A-MESS in its ablation) over "
                       "seeds (finished seeds with a matching fingerprint are reused, stale "
                       "ones retrained), then write table.md / table.csv with mean ± std, the "
                       "paired per-seed difference to the reference row and the papers' "
                       "numbers under <out>/ablations/<dataset>/<preset>/. Table 1's "
                       "MAG-BERT, MulT and A-MESS (and the amess table) need --preset cpu-ft; "
                       "a cpu grid leaves them out by name.")
    b.add_argument("--dataset", default="MIntRec2.0")
    b.add_argument("--tables", nargs="*", default=[], help="paper tables: 1 2 5 6 8 fusion amess")
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
    b.add_argument("--only-finished", action="store_true",
                   help="train nothing: tables from the finished seeds whose fingerprint "
                        "matches (each row paired with its reference row over their common seeds)")

    m = sub.add_parser("demo", help="execute the notebooks in order with papermill")
    m.add_argument("--quick", action="store_true", help="small parameters (as the tests)")
    m.add_argument("--out", default=None,
                   help="output root (default $MIR_OUTPUT_DIR or outputs/ at the project root)")
    m.add_argument("--only", nargs="*", default=None, help="notebook numbers, e.g. 01 04")
    m.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="notebooks run at once, one CPU thread each, in the order of "
                        "mir_core.demo.NEEDS (default: 2, or 1 on a 1-core machine)")

    n = sub.add_parser(
        "annotate", help="notebook 02's LLM chain as a batch job (resumable reply cache)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run CoT steps 1-3 of LGSRR (and the A-MESS label descriptions) over a "
        "split through the reply cache of notebook 02: cached items are never queried "
        "again, so rerunning the command resumes. One progress bar per step (stderr); the "
        "run statistics are appended as one JSON line to <cache>.stats.jsonl. The API key "
        "is read from the environment ($MIR_LLM_API_KEY, or the variable named by "
        "--api-key-env), never from the command line. Exit status: 0 done, 1 some items "
        "could not be answered (rerun to retry them), 2 an error (one line).")
    n.add_argument("--dataset", default="MIntRec2.0")
    n.add_argument("--split", default="train", help="train | dev | test (step 3: train only)")
    n.add_argument("--steps", nargs="+", default=["1", "2", "3"],
                   choices=["1", "2", "3", "labels"], metavar="STEP",
                   help="1 cues, 2 descriptions, 3 importance ranks, labels (A-MESS label "
                        "descriptions); default 1 2 3")
    n.add_argument("--backend", default="openai", choices=["openai", "local"])
    n.add_argument("--base-url", default=None,
                   help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                        "(default $MIR_LLM_BASE_URL)")
    n.add_argument("--model", default=None,
                   help="model name the server expects (default $MIR_LLM_MODEL); local: "
                        "smollm2-135m-instruct (default), gemma3-270m or a checkpoint folder")
    n.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="name of the environment variable holding the API key (default "
                        "MIR_LLM_API_KEY, which may be unset for local servers)")
    n.add_argument("--concurrency", type=int, default=4,
                   help="requests in flight (openai; the local backend runs one at a time)")
    n.add_argument("--limit", type=int, default=None, metavar="K",
                   help="annotate K samples of the split in steps 2-3 (label-stratified draw "
                        "with --seed; default: the whole split)")
    n.add_argument("--cache", default=None, metavar="PATH",
                   help="reply cache (JSONL; default <cache_dir>/annotation/replies.jsonl)")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--data-root", default=None)
    n.add_argument("--rank-mode", default="generate", choices=["generate", "loglik"],
                   help="step 3: parse a generated ranking, or score the 6 orders (local)")
    n.add_argument("--loglik-norm", default="total", choices=["total", "mean", "calibrated"])
    n.add_argument("--retries", type=int, default=2,
                   help="extra attempts after an unparsable reply")
    n.add_argument("--http-retries", type=int, default=4,
                   help="extra HTTP requests after a transient failure (429, 5xx, timeout)")
    n.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    n.add_argument("--max-new-tokens", nargs="*", default=[], metavar="STEP=N",
                   help="generation budgets, e.g. cues=96 describe=64 rank=40 labels=80")
    n.add_argument("--cue-rounds", type=int, default=3, help="step 1: background samples")
    n.add_argument("--cue-background-n", type=int, default=5, help="step 1: samples each")
    n.add_argument("--top-k", type=int, default=3, help="step 1: K")
    n.add_argument("--label-limit", type=int, default=None,
                   help="labels step: the first N labels of the dataset (default: all)")
    n.add_argument("--label-examples", default=None, metavar="FILE",
                   help="labels step: a label-description file (e.g. the A-MESS paper's) whose "
                        "descriptions of other labels are given as worked examples (few-shot); "
                        "default: the paper's prompt with its one inline example")
    n.add_argument("--label-shots", type=int, default=3, metavar="N",
                   help="labels step: worked examples per query with --label-examples")
    n.add_argument("--video-dir", default=None, help="step 2: folder of the clips ({key}.mp4)")
    n.add_argument("--n-frames", type=int, default=16)
    n.add_argument("--threads", type=int, default=None, help="local backend: torch threads")
    n.add_argument("--out", default=None,
                   help="also write cues.csv, descriptions.csv, ranks.tsv/.csv, "
                        "label_descriptions.json here")
    n.add_argument("--abort-after", type=int, default=8, metavar="N",
                   help="stop after N items in a row the server could not answer (0: never)")
    n.add_argument("--no-progress", action="store_true", help="no progress bars")

    from .xmei.cli import add_parser as _add_xmei
    _add_xmei(sub)

    ap.add_argument("--debug", action="store_true", help="full tracebacks for every error")
    a = ap.parse_args(argv)
    a.argv = None if argv is None else list(argv)
    try:
        return _dispatch(a)
    except EXPECTED as e:
        if a.debug:
            raise
        print(f"error: {type(e).__name__}: {one_line(e)}", file=sys.stderr)
        return 2
    finally:
        _end_processes()


def _is_main_process() -> bool:
    """False in the processes other than the main one of a distributed launch."""
    return os.environ.get("RANK", "0") == "0"


def _end_processes() -> None:
    """Close the process group of a distributed launch (torch warns at exit otherwise)."""
    if "torch" not in sys.modules:             # a command that never loaded torch
        return
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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
        if _is_main_process():
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
                                 log=lambda *_: None, train=not a.only_finished)
        df = ablation.compare(grid, a.metric)
        folder = ablation.save(grid, df, a.out, a.metric)
        print(ablation.markdown(df, grid, a.metric))
        print(f"written: {folder}/table.md, table.csv, results.jsonl")
        return 0
    if a.cmd == "demo":
        from .demo import run_demo
        run_demo(out=a.out, quick=a.quick, only=a.only, jobs=a.jobs)
        return 0
    if a.cmd == "annotate":
        return _annotate(a)
    if a.cmd == "xmei":
        from .xmei.cli import run_cli
        return run_cli(a, _parse_sets)
    return 1


def _annotate(a) -> int:
    from .annotation.batch import EXPECTED_ERRORS, BatchSpec, run_batch, summary
    try:
        mnt = {}
        for k, v in _parse_sets(a.max_new_tokens).items():
            if not isinstance(v, int):
                raise ConfigError(f"--max-new-tokens {k}={v!r}: expected an integer")
            mnt[k] = v
        spec = BatchSpec(
            dataset=a.dataset, split=a.split, steps=a.steps, backend=a.backend, model=a.model,
            base_url=a.base_url, api_key_env=a.api_key_env, concurrency=a.concurrency,
            limit=a.limit, cache=a.cache, seed=a.seed, data_root=a.data_root,
            rank_mode=a.rank_mode, loglik_norm=a.loglik_norm, retries=a.retries,
            http_retries=a.http_retries, timeout_s=a.timeout, max_new_tokens=mnt,
            cue_rounds=a.cue_rounds, cue_background_n=a.cue_background_n, top_k=a.top_k,
            label_limit=a.label_limit, label_examples=a.label_examples,
            label_shots=a.label_shots, video_dir=a.video_dir, n_frames=a.n_frames,
            num_threads=a.threads, out=a.out, progress=not a.no_progress,
            abort_after=a.abort_after)
        result = run_batch(spec, argv=sys.argv[1:] if a.argv is None else a.argv)
    except EXPECTED_ERRORS as e:
        if a.debug:
            raise
        print(f"error: {type(e).__name__}: {one_line(e)}", file=sys.stderr)
        return 2
    print(json.dumps(summary(result), indent=2))
    if result.exit_status:
        print(f"incomplete: {result.record['error']}", file=sys.stderr)
    return result.exit_status


if __name__ == "__main__":
    sys.exit(main())
