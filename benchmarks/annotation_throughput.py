"""Throughput and quality of local LLM ranking (CoT step 3) on real train items.

For each (model, mode) configuration this annotates ``--n`` MIntRec2.0 train samples
(label-stratified draw with ``--seed``; Template 3 over the released VideoLLaMA2
descriptions and the gold label) with a fresh reply cache, then:

* items/s, tokens/s (generated tokens for 'generate', scored candidate tokens for
  'loglik'), prompt tokens/s, failures, backend calls;
* agreement with the released GPT-3.5 ranks (top-1, exact order, mean Kendall tau,
  coverage) next to the trivial ranker "always I > A > E" on the same items;
* cache replay: the same run again, every item served from the cache;
* the estimated time to annotate all train samples at the measured rate.

A log-likelihood run with ``loglik_norm='calibrated'`` records the total, per-token and
content-free scores, so the total / mean / calibrated selections are all reported from
one scoring pass. ``--labels N`` adds A-MESS label descriptions for the first N labels of
every data set (parse rate, throughput); ``--replay-only`` re-measures the cache replay of
an existing result file.

    python benchmarks/annotation_throughput.py --n 40 --seed 0 \\
        --configs smollm2-135m-instruct:generate smollm2-135m-instruct:loglik gemma3-270m:loglik

Results: ``outputs/benchmarks/annotation_throughput.json`` (rewritten after each
configuration, so an interrupted run keeps what it finished).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _machine() -> dict:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "loadavg_1m_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run_config(model: str, mode: str, args, ref, log) -> dict:
    from mir_core.annotation import (AnnotationChain, ChainConfig, agreement,
                                     loglik_orders, make_backend)

    cache_path = Path(args.cache_dir) / f"{model}_{mode}_n{args.n}_s{args.seed}.jsonl"
    if cache_path.exists() and not args.keep_cache:
        cache_path.unlink()
    t0 = time.perf_counter()
    backend = make_backend("local", model, num_threads=args.threads, log=log)
    load_s = time.perf_counter() - t0
    cfg = ChainConfig(dataset=args.dataset, sample_size=args.n, seed=args.seed,
                      data_root=args.data_root, cache_path=cache_path, rank_mode=mode,
                      loglik_norm="calibrated" if mode == "loglik" else "total",
                      max_retries=args.max_retries, max_new_tokens_rank=args.max_new_tokens)
    chain = AnnotationChain(backend, cfg, log=log)
    ranks = chain.rank()
    stats = ranks.stats.as_dict()
    rate = stats["queried_per_s"]
    out = {
        "model": model, "mode": mode, "load_s": load_s, "stats": stats,
        "replay": measure_replay(backend, cfg, log),
        "estimated_hours_all_train": (args.train_size / rate / 3600) if rate == rate and rate
        else None,
    }
    if mode == "loglik":
        out["agreement"] = {norm: agreement(loglik_orders(ranks, norm), ref).as_dict()
                            for norm in ("total", "mean", "calibrated")}
    else:
        out["agreement"] = {"generate": agreement(ranks.orders, ref).as_dict()}
        out["parse_methods"] = _methods(chain, ranks)
        out["example_failures"] = [
            {"key": k, "error": e, "raw": r} for k, e, r, ok in
            zip(ranks.keys, ranks.errors, ranks.raw, ranks.ok) if not ok][:3]
    return out


def measure_replay(backend, cfg, log) -> dict:
    """Re-run on the filled cache: every item must be a hit. Timed with and without
    opening (parsing) the cache file."""
    from mir_core.annotation import AnnotationChain, ReplyCache

    t0 = time.perf_counter()
    cache = ReplyCache(cfg.cache_path, log=log)
    open_s = time.perf_counter() - t0
    stats = AnnotationChain(backend, cfg, cache=cache, log=log).rank().stats.as_dict()
    total_s = time.perf_counter() - t0
    return {"items": stats["items"], "cache_hits": stats["cache_hits"],
            "queried": stats["queried"], "rank_wall_s": stats["wall_s"],
            "rank_items_per_s": stats["items_per_s"], "open_cache_s": open_s,
            "total_s": total_s, "total_items_per_s": stats["items"] / total_s}


def replay_only(args) -> int:
    """Re-measure the cache replay of every run of an existing result file."""
    from mir_core.annotation import ChainConfig, make_backend

    out = Path(args.out)
    result = json.loads(out.read_text())
    for run in result["runs"]:
        if "error" in run:
            continue
        model, mode = run["model"], run["mode"]
        cache_path = Path(args.cache_dir) / f"{model}_{mode}_n{args.n}_s{args.seed}.jsonl"
        backend = make_backend("local", model, num_threads=args.threads, log=print)
        cfg = ChainConfig(dataset=args.dataset, sample_size=args.n, seed=args.seed,
                          data_root=args.data_root, cache_path=cache_path, rank_mode=mode,
                          loglik_norm="calibrated" if mode == "loglik" else "total",
                          max_retries=args.max_retries, max_new_tokens_rank=args.max_new_tokens)
        run["replay"] = measure_replay(backend, cfg, print)
        print(model, mode, run["replay"])
    out.write_text(json.dumps(result, indent=2, default=float))
    return 0


def _methods(chain, ranks) -> dict:
    from collections import Counter

    c: Counter = Counter()
    for rec in chain.cache.records("rank"):
        if rec.ok and isinstance(rec.parsed, dict):
            c[rec.parsed.get("method", "")] += 1
    return dict(c)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="MIntRec2.0")
    ap.add_argument("--n", type=int, default=40, help="train samples to annotate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", nargs="*",
                    default=["smollm2-135m-instruct:generate", "smollm2-135m-instruct:loglik",
                             "gemma3-270m:loglik"],
                    help="model:mode pairs (mode: generate | loglik)")
    ap.add_argument("--max-retries", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--cache-dir", default="outputs/benchmarks/annotation_cache")
    ap.add_argument("--keep-cache", action="store_true",
                    help="reuse an existing cache (default: start fresh, so items are queried)")
    ap.add_argument("--out", default="outputs/benchmarks/annotation_throughput.json")
    ap.add_argument("--labels", type=int, default=0,
                    help="also run A-MESS label descriptions for the first N labels of every "
                         "data set (0: skip; -1: all labels)")
    ap.add_argument("--label-model", default="smollm2-135m-instruct")
    ap.add_argument("--replay-only", action="store_true",
                    help="only re-measure the cache replay of the runs in --out")
    args = ap.parse_args(argv)

    from mir_core.annotation import agreement, trivial_orders
    from mir_core.data import download, get_spec, load_split

    root = args.data_root or download(args.dataset, log=lambda *a: None)
    args.data_root = str(root)
    if args.replay_only:
        return replay_only(args)
    train = load_split(args.dataset, "train", root)
    args.train_size = len(train)
    sample = train.subset(args.n, seed=args.seed)
    ref = sample.rank_order
    Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
    result = {
        "command": "python benchmarks/annotation_throughput.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "dataset": get_spec(args.dataset).name, "split": "train", "n": args.n, "seed": args.seed,
        "keys": sample.keys, "machine": _machine(), "max_retries": args.max_retries,
        "max_new_tokens": args.max_new_tokens,
        "trivial": agreement(trivial_orders(len(sample)), ref).as_dict(),
        "runs": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    for spec in args.configs:
        model, _, mode = spec.partition(":")
        mode = mode or "generate"
        log(f"== {model} / {mode} on {args.n} {args.dataset} train items (seed {args.seed})")
        try:
            res = run_config(model, mode, args, ref, log)
        except Exception as e:          # one failing model must not lose the others' numbers
            res = {"model": model, "mode": mode, "error": f"{type(e).__name__}: {e}"}
        res["loadavg_1m_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        result["runs"].append(res)
        out.write_text(json.dumps(result, indent=2, default=float))
        log(json.dumps({k: v for k, v in res.items() if k not in ("example_failures",)},
                       indent=1, default=float)[:3000])
    if args.labels:
        result["label_descriptions"] = run_labels(args, log)
        out.write_text(json.dumps(result, indent=2, default=float))
    log(f"wrote {out}")
    return 0


def run_labels(args, log) -> dict:
    """A-MESS label descriptions with a local model: parse rate and throughput."""
    from mir_core.annotation import AnnotationChain, ChainConfig, make_backend
    from mir_core.data import DATASETS

    labels = list(dict.fromkeys(
        lab for spec in DATASETS.values()
        for lab in (spec.labels if args.labels < 0 else spec.labels[:args.labels])))
    cache_path = Path(args.cache_dir) / f"{args.label_model}_labels.jsonl"
    if cache_path.exists() and not args.keep_cache:
        cache_path.unlink()
    backend = make_backend("local", args.label_model, num_threads=args.threads, log=log)
    cfg = ChainConfig(dataset=args.dataset, data_root=args.data_root, cache_path=cache_path,
                      max_retries=args.max_retries)
    res = AnnotationChain(backend, cfg, log=log).label_descriptions(labels=labels)
    return {"model": args.label_model, "labels": labels, "n_ok": len(res.descriptions),
            "stats": res.stats.as_dict(), "descriptions": res.descriptions,
            "failures": res.failures}


if __name__ == "__main__":
    raise SystemExit(main())
