"""The whole one-off text encoding of a dataset, as the `cpu` preset caches it: every split's
utterances (T) and three descriptions (A, E, I), per-layer mean and [CLS] pooled, at the
training lengths, into a fresh temporary feature store (so it really encodes).

    python benchmarks/encoding_time.py --dataset IEMOCAP-DA --encoder minilm-l6 --precision bf16 --threads 1

Prints the machine (CPU model, flags, torch, threads), seconds and sequences/s per split
and source and in total; writes outputs/benchmarks/encoding_<dataset>_<encoder>_<precision>_t<threads>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from machine import machine_info, machine_line  # noqa: E402

from mir_core.data import SPLITS, get_spec, load_split  # noqa: E402
from mir_core.features.store import FeatureStore  # noqa: E402
from mir_core.features.text import SOURCES, split_text_features  # noqa: E402
from mir_core.training import TrainConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="MIntRec2.0")
    ap.add_argument("--encoder", default="minilm-l6")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="outputs/benchmarks")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(machine_line(), flush=True)
    spec = get_spec(a.dataset)
    text_len, desc_len = (n - 2 for n in TrainConfig().max_lens(spec))
    rows, total_s, total_n = [], 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(Path(tmp) / "features", log=lambda *_: None)
        for split in SPLITS:
            sp = load_split(a.dataset, split)
            sources = SOURCES if sp.has_descriptions else ("text",)
            for source in sources:
                t0 = time.perf_counter()
                split_text_features(sp, a.encoder, (source,), store=store, text_len=text_len,
                                    desc_len=desc_len, progress=False, precision=a.precision)
                s = time.perf_counter() - t0
                rows.append({"split": split, "source": source, "n": len(sp), "seconds": round(s, 2),
                             "seq_per_s": round(len(sp) / s, 1)})
                total_s += s
                total_n += len(sp)
                print(f"{split}/{source}: {len(sp)} texts in {s:.1f} s ({len(sp) / s:.1f} seq/s)",
                      flush=True)
    print(f"{a.dataset} {a.encoder} {a.precision}, {a.threads} thread(s): {total_n} texts in "
          f"{total_s:.0f} s ({total_n / total_s:.1f} seq/s), text {text_len} + 2 tokens, "
          f"descriptions {desc_len} + 2")
    out = Path(a.out) / f"encoding_{a.dataset}_{a.encoder}_{a.precision}_t{a.threads}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_info(), "dataset": a.dataset,
                               "encoder": a.encoder, "precision": a.precision,
                               "threads": a.threads, "rows": rows, "seconds": round(total_s, 1),
                               "texts": total_n}, indent=2))


if __name__ == "__main__":
    main()
