"""Text-encoder sequences/s per precision on this machine's CPU; a table, JSON to --out.

    python benchmarks/precision.py                                   # the defaults below
    python benchmarks/precision.py --threads 2 --encoders minilm-l6=512 all-mpnet-base-v2=256

For each encoder x thread count x batch size it times, on N MIntRec2.0 train utterances
(a seeded sample, sorted by length, dynamic padding, truncated at l_T + 2 tokens as the
feature code does, masked mean pooling of the last layer):

* fp32 eager (the reference) and bf16 autocast eager;
* torch.compile of the fp32 model (``dynamic=True``; compiled once per encoder and thread
  count, given --compile-budget seconds; a failure or timeout is recorded as such);
* ONNX Runtime: only where ``onnxruntime`` is importable, which it is not in this
  workspace's environment, so it is recorded as skipped (nothing is installed for it).

Each figure is the best of --repeat passes over all N texts after a warm-up batch (the
machine may be shared: the best pass is the least disturbed; the load average at start and
end is recorded). Also the cosine of bf16 to fp32 pooled embeddings, per text.
This is what ``precision="auto"`` (:mod:`mir_core.precision`) decides by on each machine:
bf16 speed cannot be told from the CPU's flags.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info, machine_line  # noqa: E402

from mir_core import paths  # noqa: E402
from mir_core.data import get_spec, load_split  # noqa: E402
from mir_core.modelpack import load_text_encoder  # noqa: E402
from mir_core.precision import autocast  # noqa: E402


def sample_texts(n: int, seed: int = 0) -> list[str]:
    """n train utterances of MIntRec2.0 (a seeded sample), shortest first."""
    texts = load_split("MIntRec2.0", "train").texts
    pick = np.random.default_rng(seed).choice(len(texts), size=min(n, len(texts)),
                                              replace=False)
    return sorted((texts[i] for i in pick), key=len)


@torch.no_grad()
def pooled(model, batches: list[dict], precision: str) -> torch.Tensor:
    """(N, D) float32 masked means of the last hidden states, batch after batch."""
    out = []
    with autocast(precision, "cpu"):
        for enc in batches:
            h = model(**enc).last_hidden_state.float()                  # (B, T, D)
            m = enc["attention_mask"][..., None].float()                # (B, T, 1)
            out.append((h * m).sum(1) / m.sum(1).clamp(min=1.0))        # (B, D)
    return torch.cat(out)


def seqs_per_s(model, batches: list[dict], precision: str, repeat: int) -> float:
    """Sequences/s: the best of ``repeat`` passes over all batches, after one warm-up."""
    pooled(model, batches[-1:], precision)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        pooled(model, batches, precision)
        best = min(best, time.perf_counter() - t0)
    return sum(len(b["input_ids"]) for b in batches) / best


class _Timeout(Exception):
    pass


def _raise_timeout(signum, frame):
    raise _Timeout


def compiled_model(model, batches: list[dict], budget_s: int) -> tuple[object | None, dict]:
    """(compiled model or None, what happened): compile by running one pass over every
    batch shape, within ``budget_s`` seconds (SIGALRM)."""
    torch._dynamo.reset()
    compiled = torch.compile(model, dynamic=True)
    old = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.alarm(budget_s)
    t0 = time.perf_counter()
    try:
        pooled(compiled, batches, "fp32")
        return compiled, {"ok": True, "compile_seconds": round(time.perf_counter() - t0, 1)}
    except _Timeout:
        return None, {"ok": False, "error": f"did not compile within {budget_s} s"}
    except Exception as e:                  # noqa: BLE001 -- any compiler failure is a result
        first = (str(e).strip().splitlines() or [""])[0][:200]
        return None, {"ok": False, "error": f"{type(e).__name__}: {first}",
                      "seconds": round(time.perf_counter() - t0, 1)}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def bench_encoder(name: str, n: int, threads: list[int], batch_sizes: list[int], repeat: int,
                  compile_budget: int | None) -> tuple[list[dict], dict, list[dict]]:
    """(rows, texts and bf16-vs-fp32 cosines, torch.compile outcomes) of one encoder."""
    tok, model = load_text_encoder(name)
    texts = sample_texts(n)
    max_len = get_spec("MIntRec2.0").text_len + 2
    batches = {bs: [tok(texts[s:s + bs], padding=True, truncation=True, max_length=max_len,
                        return_tensors="pt") for s in range(0, len(texts), bs)]
               for bs in batch_sizes}
    ref, half = (pooled(model, batches[batch_sizes[-1]], p) for p in ("fp32", "bf16"))
    cos = torch.nn.functional.cosine_similarity(ref, half, dim=1)
    tokens = sum(int(e["attention_mask"].sum()) for e in batches[batch_sizes[-1]])
    summary = {"n": len(texts), "max_len": max_len, "mean_tokens": tokens / len(texts),
               "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean())}
    rows, compiles = [], []
    for t in threads:
        torch.set_num_threads(t)
        compiled, outcome = (None, None)
        if compile_budget:
            # compiled once per thread count: inductor's CPU kernels fix their thread count
            compiled, outcome = compiled_model(model, [b for bs in batch_sizes
                                                       for b in batches[bs]], compile_budget)
            compiles.append({"encoder": name, "threads": t, **outcome})
        for bs in batch_sizes:
            row = {"encoder": name, "threads": t, "batch": bs,
                   "fp32": seqs_per_s(model, batches[bs], "fp32", repeat),
                   "bf16": seqs_per_s(model, batches[bs], "bf16", repeat)}
            row["bf16_over_fp32"] = row["bf16"] / row["fp32"]
            if compiled is not None:
                row["compile_fp32"] = seqs_per_s(compiled, batches[bs], "fp32", repeat)
                row["compile_over_fp32"] = row["compile_fp32"] / row["fp32"]
            rows.append(row)
            print(_row_line(row), flush=True)
    return rows, summary, compiles


_HEAD = (f"{'encoder':<20}{'thr':>4}{'batch':>6}{'fp32 seq/s':>12}{'bf16 seq/s':>12}"
         f"{'bf16/fp32':>11}{'compile seq/s':>15}{'comp/fp32':>11}")


def _row_line(r: dict) -> str:
    comp = (f"{r['compile_fp32']:>15.1f}{r['compile_over_fp32']:>10.2f}x"
            if "compile_fp32" in r else f"{'-':>15}{'-':>11}")
    return (f"{r['encoder']:<20}{r['threads']:>4}{r['batch']:>6}{r['fp32']:>12.1f}"
            f"{r['bf16']:>12.1f}{r['bf16_over_fp32']:>10.2f}x{comp}")


def _pair(s: str) -> tuple[str, int]:
    name, _, n = s.partition("=")
    if not n.isdigit():
        raise argparse.ArgumentTypeError(f"expected ENCODER=N (e.g. minilm-l6=512), got {s!r}")
    return name, int(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", nargs="+", type=_pair,
                    default=[("minilm-l6", 512), ("all-mpnet-base-v2", 256)],
                    help="ENCODER=N: encoder and number of utterances")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--compile-budget", type=int, default=300,
                    help="seconds allowed for torch.compile per encoder and thread count "
                         "(0: skip torch.compile)")
    ap.add_argument("--out", type=Path,
                    default=paths.output_dir() / "benchmarks" / "precision.json")
    args = ap.parse_args(argv)

    info = {**machine_info(), "load_avg_start": list(os.getloadavg())}
    print(machine_line(), flush=True)
    ort = importlib.util.find_spec("onnxruntime") is not None
    ort_note = ("importable, but this benchmark has no ONNX Runtime path" if ort
                else "not importable: skipped")
    print(_HEAD, flush=True)
    rows, texts, compiles = [], {}, []
    for name, n in args.encoders:
        r, texts[name], c = bench_encoder(name, n, args.threads, args.batch_sizes,
                                            args.repeat, args.compile_budget)
        rows += r
        compiles += c
    info["load_avg_end"] = list(os.getloadavg())
    for name, c in texts.items():
        print(f"{name}: {c['n']} texts, {c['mean_tokens']:.1f} tokens on average (max "
              f"{c['max_len']}); cosine bf16 vs fp32 pooled: min {c['cosine_min']:.6f}, "
              f"mean {c['cosine_mean']:.6f}")
    for c in compiles:
        print(f"torch.compile {c['encoder']} ({c['threads']} threads): "
              + (f"compiled in {c['compile_seconds']} s" if c["ok"] else c["error"]))
    print(f"onnxruntime: {ort_note}")
    print(f"load average start {info['load_avg_start']}, end {info['load_avg_end']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": info, "repeat": args.repeat, "rows": rows, "texts": texts,
        "torch_compile": compiles, "onnxruntime": ort_note}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
